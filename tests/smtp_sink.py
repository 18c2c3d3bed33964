"""A real SMTP server on loopback for fastlane's e-mail tests (aiosmtpd).

Each message received is written to DIR as <uuid>.json: its envelope, its
Subject/From/To headers and its decoded text and HTML parts (Python's own
e-mail parser). Prints "ready" once it listens. Usage: python3 smtp_sink.py --port PORT --dir DIR
"""
import argparse
import email
import email.policy
import json
import pathlib
import signal
import threading
import uuid

from aiosmtpd.controller import Controller


class Store:
    def __init__(self, directory: pathlib.Path):
        self.directory = directory

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(
            envelope.original_content or envelope.content, policy=email.policy.default
        )
        text = message.get_body(("plain",))
        html = message.get_body(("html",))
        record = {
            "mailFrom": envelope.mail_from,
            "rcptTos": envelope.rcpt_tos,
            "subject": str(message["Subject"]),
            "from": str(message["From"]),
            "to": str(message["To"]),
            "contentType": message.get_content_type(),
            "text": text.get_content() if text else None,
            "html": html.get_content() if html else None,
        }
        name = self.directory / f"{uuid.uuid4()}.json"
        partial = name.with_suffix(".partial")
        partial.write_text(json.dumps(record))
        partial.rename(name)
        return "250 Message accepted for delivery"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    directory = pathlib.Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    controller = Controller(Store(directory), hostname="127.0.0.1", port=args.port)
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
