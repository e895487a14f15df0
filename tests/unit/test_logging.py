"""JSON logs are keyed by the resource, and library loggers that print bodies stay quiet."""

import io
import json
import logging

from ecs_reinstall.__main__ import configure_logging
from ecs_reinstall.settings import Settings


def test_json_log_lines_carry_the_resource():
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging(Settings(log_format="json", log_level="INFO"))
        stream = io.StringIO()
        for handler in root.handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(stream)
        log = logging.LoggerAdapter(
            logging.getLogger("ecs_reinstall.runner"), {"k8s_ref": {"namespace": "team-a", "name": "web-01"}}
        )
        log.info("Reinstalling: cloud job %s accepted", "job-1")
        record = json.loads(stream.getvalue().strip().splitlines()[-1])
        assert record["message"] == "Reinstalling: cloud job job-1 accepted"
        assert record["object"] == {"namespace": "team-a", "name": "web-01"}
        assert record["severity"] == "info"
        assert logging.getLogger("kubernetes").getEffectiveLevel() == logging.WARNING
        assert logging.getLogger("kopf.objects").getEffectiveLevel() == logging.WARNING
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
