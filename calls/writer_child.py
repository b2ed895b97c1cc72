"""``python -m calls.writer_child FD``: the webhook's writer process (calls/writer_process.py).

Django is set up before anything imports a model; then, as for the server
(retellhub/asgi.py), what start-up made is moved out of the garbage collector's reach.
"""

import os
import sys

import django

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retellhub.settings")
    django.setup()
    from calls.writer_process import child_main
    from retellhub.heap import settle_start_up_heap

    settle_start_up_heap()
    child_main(int(sys.argv[1]))
