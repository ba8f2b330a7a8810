"""Queue disciplines: the order in which a replica's waiting requests are admitted. Each is
implemented once, in the kernel (sim/engine/kernel/queues.py: `q_push`, `q_head`, `q_pop` over a
queue row, so that one queue can be shared by every replica under central_queue); these classes
name them for the registry (sim/registry.py QUEUES) and a scheduler picks one by its `queue`
attribute.
- fifo: arrival order; a preempted request goes back to the front (a linked list).
- priority: lowest class first, then arrival (a skew heap keyed by (class, arrival)).
- sjf: shortest prompt still to compute first, except that a request waiting longer than the
  scheduler's `ageing_s` goes first, oldest first (a skew heap, and an arrival-order list for
  the ageing bound).
"""

from __future__ import annotations


class QueueDiscipline:
    """A discipline the kernel implements under the code the registry gives it."""

    time_dependent = False  # whether the head can change with time alone


class FifoQueue(QueueDiscipline):
    pass


class PriorityQueue(QueueDiscipline):
    pass


class SjfQueue(QueueDiscipline):
    time_dependent = True  # ageing
