"""Background execution of runs: submit returns a run id at once; each device ("cpu", "cuda", "mps";
"auto" counts as the device it trains on) has its own FIFO queue feeding at most `max_concurrent`
workers (1 by default), so a class sharing one server cannot overload it and a CPU run never waits
behind a GPU run.

Runs execute in worker processes (tlcore.jobs.backends), or on Ray when TLCORE_RAY_ADDRESS is set;
workers write only to the run store and pages read only the store. Nothing here knows Streamlit.
Host limits come from the constructor or the environment (tlcore.limits).
"""
from .backends import Backend, ProcessBackend, ThreadBackend, device_of
from .runner import JobRunner, QueueFull
from ..limits import Limits

__all__ = ["Backend", "JobRunner", "Limits", "ProcessBackend", "QueueFull", "ThreadBackend", "device_of"]
