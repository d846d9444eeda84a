"""Client configuration: dicts with Kafka's dotted key names, checked once.

An unknown key or a bad value raises InvalidConfig naming the key, at construction, so a
typo ("linger_ms") fails loudly instead of being ignored.
"""
from odradek.client.errors import InvalidConfig

__all__ = ["parse_config"]


def parse_config(given, schema, what):
    """`schema`: {key: (parse, default)}; returns {key: value} with every key present."""
    out = {k: d for k, (_, d) in schema.items()}
    for key, raw in (given or {}).items():
        if key not in schema:
            known = ", ".join(sorted(schema))
            raise InvalidConfig(f"unknown {what} config {key!r}; known keys: {known}")
        parse = schema[key][0]
        try:
            out[key] = parse(raw)
        except (TypeError, ValueError) as e:
            raise InvalidConfig(f"{what} config {key}={raw!r} is not valid: {e}") from None
    return out


def non_negative_int(raw):
    value = int(raw)
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def positive_int(raw):
    value = int(raw)
    if value <= 0:
        raise ValueError("must be > 0")
    return value


def boolean(raw):
    if isinstance(raw, bool):
        return raw
    if str(raw).lower() in ("true", "1", "yes"):
        return True
    if str(raw).lower() in ("false", "0", "no"):
        return False
    raise ValueError("must be true or false")


def acks(raw):
    if str(raw).lower() == "all":
        return -1
    value = int(raw)
    if value not in (-1, 0, 1):
        raise ValueError("must be 0, 1, all or -1")
    return value


def one_of(*choices):
    def parse(raw):
        if raw not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return raw
    return parse
