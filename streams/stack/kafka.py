"""Apache Kafka 3.9 as one KRaft node, from jars Maven resolves (no Docker, no tarball).

Health is a real round trip: create a health topic, produce a token, read it back.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from streams.errors import StackError
from streams.stack import process
from streams.stack.process import console
from streams.stack.service import TEMPLATES, Check, Service, render

POM = TEMPLATES / "pom.xml"
HEALTH_TOPIC = "_signalement.health"
JVM_HEAP = ["-Xmx768m", "-Xms256m"]


def new_cluster_id() -> str:
    """A random id as Kafka's `Uuid.randomUuid` makes them: never one starting with "-", which
    command lines read as an option (kafka-storage failed on a fresh machine for 1 in 64 ids)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


class Kafka(Service):
    name = "Kafka"
    stop_timeout = 45.0

    @property
    def dir(self) -> Path:
        return self.settings.home / "kafka"

    @property
    def libs(self) -> Path:
        return self.dir / "libs"

    @property
    def config_file(self) -> Path:
        return self.dir / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def log_file(self) -> Path:
        return self.dir / "logs" / "server.log"

    def ports(self) -> dict[str, int]:
        return {"kafka": self.settings.kafka_port, "controller": self.settings.controller_port}

    def version(self) -> str:
        jars = sorted(self.libs.glob("kafka_2.13-*.jar"))
        return jars[-1].name.removeprefix("kafka_2.13-").removesuffix(".jar") if jars else "?"

    def prepare(self) -> None:
        """Resolve jars, write the configs, format the storage once."""
        java = shutil.which("java")
        if java is None:
            raise StackError("java not found: Kafka needs a Java 17+ runtime (apt-get install openjdk-17-jre-headless)")
        self.ensure_libs()
        render("kafka-log4j.properties", self.dir / "log4j.properties", log_file=self.log_file)
        render("kafka-server.properties", self.config_file, kafka_port=self.settings.kafka_port,
               controller_port=self.settings.controller_port, data_dir=self.data_dir)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.format_storage(java)

    def ensure_libs(self) -> None:
        """Copy the broker's runtime jars into libs/ unless a complete copy for this pom is there."""
        marker = self.libs / ".resolved"
        digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:16]
        if marker.exists():
            want_digest, _, count = marker.read_text().strip().partition(" ")
            if want_digest == digest and len(list(self.libs.glob("*.jar"))) >= int(count or 0) > 0:
                return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise StackError("mvn not found: the Kafka jars are resolved with Maven (apt-get install maven)")
        staging = self.dir / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        console.print(f"  resolving Kafka jars with Maven into {self.libs} (once)")
        started = time.monotonic()
        argv = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}"]
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            out = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
            raise StackError(f"Maven could not resolve the Kafka jars (exit {result.returncode}):\n{out}")
        jars = list(staging.glob("*.jar"))
        (staging / ".resolved").write_text(f"{digest} {len(jars)}\n")
        shutil.rmtree(self.libs, ignore_errors=True)
        staging.rename(self.libs)
        console.print(f"  {len(jars)} jars in {time.monotonic() - started:.1f} s")

    def cluster_id(self) -> str:
        """The KRaft cluster id: generated on first use, then kept."""
        path = self.dir / "cluster.id"
        if not path.exists() or path.read_text().startswith("-"):
            path.write_text(new_cluster_id() + "\n")
        return path.read_text().strip()

    def format_storage(self, java: str) -> None:
        """kafka-storage format, only while the data directory has no meta.properties."""
        if (self.data_dir / "meta.properties").exists():
            return
        console.print(f"  formatting Kafka storage in {self.data_dir}")
        argv = [java, "-Xmx256m", f"-Dlog4j.configuration=file:{self.dir / 'log4j.properties'}",
                "-cp", f"{self.libs}/*", "kafka.tools.StorageTool", "format", f"--cluster-id={self.cluster_id()}",
                "-c", str(self.config_file), "--ignore-formatted"]
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise StackError(f"Kafka storage format failed (exit {result.returncode}):\n"
                             f"{result.stdout}{result.stderr}")

    def command(self) -> list[str]:
        return [shutil.which("java") or "java", *JVM_HEAP, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true", f"-Dlog4j.configuration=file:{self.dir / 'log4j.properties'}",
                "-cp", f"{self.libs}/*", "kafka.Kafka", str(self.config_file)]

    def checks(self) -> list[Check]:
        port = self.settings.kafka_port
        return [(f"port {port}", lambda: process.port_open(port)),
                (f"a produce/consume round trip on {HEALTH_TOPIC}", self._round_trip_ok)]

    def _round_trip_ok(self) -> bool:
        try:
            round_trip(self.settings.bootstrap)
        except Exception as exc:  # any client error means "not yet"
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        self.last_error = ""
        return True


def round_trip(bootstrap: str, timeout: float = 10.0, extra: dict[str, str] | None = None) -> None:
    """Create the health topic, produce a unique token and consume it back; raise if anything fails.

    extra: more client settings (the secure broker's SASL credentials).
    """
    from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    conf: dict[str, str | int | float | bool] = {"bootstrap.servers": bootstrap, "log_level": 0, **(extra or {})}
    admin = AdminClient(conf)  # keep a reference: the futures die with the client
    futures = admin.create_topics([NewTopic(HEALTH_TOPIC, 1, 1)], request_timeout=timeout)
    for future in futures.values():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    token = uuid.uuid4().hex.encode()
    delivered: list[tuple[object, object]] = []
    producer = Producer({**conf, "message.timeout.ms": int(timeout * 1000)})
    producer.produce(HEALTH_TOPIC, value=token, partition=0, on_delivery=lambda e, m: delivered.append((e, m)))
    producer.flush(timeout)
    if not delivered or delivered[0][0] is not None:
        raise StackError(f"health message not delivered: {delivered[0][0] if delivered else 'timeout'}")
    offset = delivered[0][1].offset()  # type: ignore[attr-defined]
    consumer = Consumer({**conf, "group.id": "signalement-health", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(HEALTH_TOPIC, 0, offset)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None and msg.value() == token:
                return
        raise StackError("health message produced but not consumed back in time")
    finally:
        consumer.close()
