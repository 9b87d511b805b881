"""moto server, one request at a time.

moto's own `moto_server` handles requests on many threads, and its in-memory backends do not
lock: two concurrent DynamoDB transactions on one item can both apply, and concurrent ADDs can
lose updates. Real DynamoDB applies every request atomically. Serving one request at a time
gives the emulator that property, so the conformance suite's concurrency checks test our
adapters, not the emulator's races. (No test uses SQS long polling, which would block here.)
"""

import argparse
import os

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, app, threaded=False, processes=1)


if __name__ == "__main__":
    main()
