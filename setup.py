"""odradek: Kafka's commit log for one Linux host.

Layout (fixed by the design card): daemon/ installs as odradek.daemon, client/ as
odradek.client, and the native modules built from daemon/c_ext/ as odradek._native (CFFI)
and odradek._hotpath (CPython C API), so that the client can import the native code
without importing the daemon.
"""
import os

from setuptools import Extension, setup


def packages_under(top, prefix):
    """Every package below `top` (a folder holding __init__.py), named under `prefix`."""
    found = {}
    for here, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
        if "__init__.py" in files:
            rel = os.path.relpath(here, top)
            name = prefix if rel == "." else prefix + "." + rel.replace(os.sep, ".")
            found[name] = here
    return found


packages = {}
packages.update(packages_under("client", "odradek.client"))
packages.update(packages_under("daemon", "odradek.daemon"))
# The top-level `odradek` is not a package of ours (it is not in `packages`, so nothing
# is installed from that folder); its entry says where odradek._native is built in place.
# An editable install (pip install -e .) builds the extension beside its sources, as
# daemon/c_ext/_native.abi3.so, and its import finder resolves odradek._native there.
package_dir = {**packages, "odradek": "daemon/c_ext"}

# odradek._hotpath: the client's per-record paths against the CPython C API (why a second
# native module: daemon/c_ext/hotpath.h). It links the same C sources as odradek._native.
_C_EXT = "daemon/c_ext"
hotpath = Extension(
    "odradek._hotpath",
    sources=[f"{_C_EXT}/{name}" for name in ("hotpath.c", "hp_producer.c", "hp_consumer.c", "hp_bytes_view.c", "odradek.c", "crc32c.c", "record_decode.c", "shm.c")],
    include_dirs=[_C_EXT],
    depends=[f"{_C_EXT}/{name}" for name in ("hotpath.h", "hp_accumulator.h", "hp_completions.h", "hp_record.h", "byte_order.h", "odradek.h")],
    extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra", "-pthread"],
    extra_link_args=["-pthread"],
)

setup(
    name="odradek",
    version="0.1.0",
    description="Kafka's durable, partitioned, replicated commit log for one Linux host",
    python_requires=">=3.11",
    packages=sorted(packages),
    package_dir=package_dir,
    # every FORMAT.md / PROTOCOL.md / LAYOUT.md ships beside its code (tests read them)
    package_data={**{name: ["*.md"] for name in packages},
                  "odradek.daemon.c_ext": ["*.h", "*.c", "*.md"]},
    setup_requires=["cffi>=1.15"],
    cffi_modules=["daemon/c_ext/_build.py:ffibuilder"],
    ext_modules=[hotpath],
    install_requires=["cffi>=1.15", "posix_ipc>=1.1", "sysv_ipc>=1.1", "psutil>=5.9", "click>=8.1",
                      # every Kafka codec (snappy, lz4, zstd; gzip too) from one maintained library:
                      # client/records/compression.py
                      "cramjam>=2.8,<3",
                      # Kafka wire messages for the gateway (daemon/gateway/codec.py): generated from
                      # Kafka's JSON specs, pre-1.0, so pinned exactly
                      "kio==0.6.5"],
    # test: kafka-python's codecs (python-snappy, lz4, zstandard), the other side of the codec
    # interop tests (tests/client/records/test_codec_interop.py); kafka-python, confluent-kafka
    # (librdkafka, what most Kafka users run) and aiokafka: Kafka clients the gateway's tests
    # and tests/interop run unmodified
    extras_require={"test": ["pytest>=7", "hypothesis>=6", "kafka-python>=2.0.2",
                             "python-snappy>=0.7", "lz4>=4", "zstandard>=0.22", "confluent-kafka>=2.16",
                             "aiokafka>=0.11"]},
    entry_points={"console_scripts": ["odradek = odradek.daemon.cli:main"]},
    zip_safe=False,
)
