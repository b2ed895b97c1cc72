"""``python -m calls.writer_child FD``: a webhook writer process (calls/writer_process.py).

Django is set up before anything imports a model; then, as for the server
(retellhub/asgi.py), what start-up made is moved out of the garbage collector's reach.

The server decides when its writer ends: the writer exits once the server closes their
socket pair, so it ignores Ctrl+C and stop signals sent to the whole process group (a
terminal, systemd), and the server can still finish the deliveries it holds while it
shuts down.
"""

import os
import signal
import sys

import django

if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retellhub.settings")
    django.setup()
    from calls.writer_process import child_main
    from retellhub.heap import settle_start_up_heap

    settle_start_up_heap()
    child_main(int(sys.argv[1]))
