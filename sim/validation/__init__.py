"""The simulator against measurement: calibration and validation on measured vLLM runs and
step times."""
