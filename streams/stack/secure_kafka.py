"""The secure broker (`signalement stack up --secure`): a second KRaft node with SASL/SCRAM and ACLs.

It is a separate broker, not a reconfiguration of the plaintext one: its own home
(<home>/kafka-secure), ports (`secure_kafka_port`, `secure_controller_port` in ports.json) and
data, the same jars. The admin's SCRAM credential is written into the metadata when the storage
is formatted (`StorageTool format --add-scram`); the other users and the ACLs are created
through the admin API afterwards (streams.security.apply).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from streams.errors import StackError
from streams.security import ADMIN, ensure_passwords
from streams.stack import process
from streams.stack.kafka import Kafka, round_trip
from streams.stack.process import console
from streams.stack.service import Check, render


class SecureKafka(Kafka):
    name = "Kafka-secure"

    @property
    def dir(self) -> Path:
        return self.settings.home / "kafka-secure"

    @property
    def libs(self) -> Path:
        return self.settings.home / "kafka" / "libs"  # the plaintext broker's jars, resolved once

    def ports(self) -> dict[str, int]:
        return {"sasl": self.settings.secure_kafka_port, "controller": self.settings.secure_controller_port}

    def admin_password(self) -> str:
        return ensure_passwords(self.settings, [ADMIN])[ADMIN]

    def prepare(self) -> None:
        java = shutil.which("java")
        if java is None:
            raise StackError("java not found: Kafka needs a Java 17+ runtime (apt-get install openjdk-17-jre-headless)")
        self.ensure_libs()
        render("kafka-log4j.properties", self.dir / "log4j.properties", log_file=self.log_file)
        render("kafka-secure-server.properties", self.config_file, kafka_port=self.settings.secure_kafka_port,
               controller_port=self.settings.secure_controller_port, data_dir=self.data_dir,
               admin_password=self.admin_password())
        self.config_file.chmod(0o600)  # it holds the admin's password
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.format_storage(java)

    def ensure_libs(self) -> None:
        Kafka(self.settings).ensure_libs()

    def format_storage(self, java: str) -> None:
        """Format once, with the admin's SCRAM credential in the first metadata records."""
        if (self.data_dir / "meta.properties").exists():
            return
        console.print(f"  formatting secure Kafka storage in {self.data_dir} (SCRAM user {ADMIN})")
        argv = [java, "-Xmx256m", f"-Dlog4j.configuration=file:{self.dir / 'log4j.properties'}",
                "-cp", f"{self.libs}/*", "kafka.tools.StorageTool", "format", f"--cluster-id={self.cluster_id()}",
                "-c", str(self.config_file), "--ignore-formatted",
                "--add-scram", f"SCRAM-SHA-512=[name={ADMIN},password={self.admin_password()}]"]
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise StackError(f"secure Kafka storage format failed (exit {result.returncode}):\n"
                             f"{result.stdout}{result.stderr}".replace(self.admin_password(), "***"))

    def command(self) -> list[str]:
        return [shutil.which("java") or "java", "-Xmx512m", "-Xms128m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true", f"-Dlog4j.configuration=file:{self.dir / 'log4j.properties'}",
                "-cp", f"{self.libs}/*", "kafka.Kafka", str(self.config_file)]

    def checks(self) -> list[Check]:
        port = self.settings.secure_kafka_port
        return [(f"port {port}", lambda: process.port_open(port)),
                (f"a produce/consume round trip as {ADMIN} over SASL/SCRAM", self._round_trip_ok)]

    def _round_trip_ok(self) -> bool:
        extra = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-512",
                 "sasl.username": ADMIN, "sasl.password": self.admin_password()}
        try:
            round_trip(self.settings.secure_bootstrap, extra=extra)
        except Exception as exc:  # any client error means "not yet"
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        self.last_error = ""
        return True
