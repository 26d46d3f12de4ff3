"""Keep every tool we drive off the network: no telemetry, no update checks, no downloads.

Set as process environment defaults (a user's explicit setting wins) before DVC, Prefect or
ultralytics are imported, so child processes started by flows and tests inherit them too.
"""

import os

OFFLINE_ENVIRONMENT = {
    "DVC_NO_ANALYTICS": "1",
    # DVCLive posts live metrics to DVC Studio when a Studio token is configured; never from here.
    "DVC_STUDIO_OFFLINE": "true",
    # Also Evidently's (0.7.23) only switch: evidently.telemetry's event logger and its UI service
    # send usage events unless DO_NOT_TRACK is set, to any value. (EVIDENTLY_DISABLE_TELEMETRY,
    # in evidently/legacy/_config.py, is read by nothing.)
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "0",
    "YOLO_VERBOSE": "False",
    "HF_HUB_OFFLINE": "1",
    "GX_ANALYTICS_ENABLED": "false",  # Great Expectations 1.24 sends nothing; the switch of other 1.x
}


def silence_network() -> None:
    """Apply OFFLINE_ENVIRONMENT as defaults of this process's environment."""
    for key, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
