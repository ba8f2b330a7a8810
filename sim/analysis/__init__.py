"""From a run's tables to answers: summaries, statistics, plots and run folders."""
