"""Helpers of the interop tests (tests/interop): create a topic through Kafka's protocol, run
an external Kafka client (kcat, kafkajs, Apache Kafka's Java tools) with a time limit."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JAVA_LIBS = os.path.join(ROOT, ".cache", "interop", "java")
JS_DIR = os.path.join(ROOT, "tests", "interop", "js")
TOOL_TIMEOUT = 60      # seconds for one run of an external client


def create_topic(bootstrap, name, partitions=1):
    """Create `name` through Kafka's CreateTopics (confluent-kafka's AdminClient)."""
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                                  operation_timeout=30, request_timeout=30)
    futures[name].result(timeout=30)
    return name


def run(args, *, input=None, timeout=TOOL_TIMEOUT, check=True, env=None):
    """Run an external client; its CompletedProcess (text). Fails with its stderr."""
    proc = subprocess.run(args, input=input, capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})
    if check and proc.returncode != 0:
        raise AssertionError(f"{args[0]} exited {proc.returncode}\nstdout: {proc.stdout[-3000:]}\n"
                             f"stderr: {proc.stderr[-3000:]}")
    return proc


def java(main_class, *args, input=None, timeout=TOOL_TIMEOUT, check=True):
    """One of Apache Kafka's Java tools (org.apache.kafka.tools.*) from .cache/interop/java."""
    if not os.path.isdir(JAVA_LIBS):
        raise AssertionError(f"{JAVA_LIBS} is missing: run `make interop-tools`")
    return run(["java", "-Xshare:auto", "-XX:TieredStopAtLevel=1", "-cp", os.path.join(JAVA_LIBS, "*"),
                main_class, *args], input=input, timeout=timeout, check=check)


def node(script, *args, timeout=TOOL_TIMEOUT, check=True):
    """A kafkajs script of tests/interop/js."""
    if not os.path.isdir(os.path.join(JS_DIR, "node_modules", "kafkajs")):
        raise AssertionError("kafkajs is missing: run `make interop-tools`")
    return run(["node", os.path.join(JS_DIR, script), *args], timeout=timeout, check=check)
