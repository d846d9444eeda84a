"""Process-wide state a gateway handler module keeps: made on first use, one per Gateway."""
import threading

__all__ = ["per_gateway"]

_lock = threading.Lock()


def per_gateway(gateway, name, factory):
    """The gateway's object `name`, made with factory(gateway) the first time."""
    obj = gateway.__dict__.get(name)
    if obj is None:
        with _lock:
            obj = gateway.__dict__.get(name)
            if obj is None:
                obj = gateway.__dict__[name] = factory(gateway)
    return obj
