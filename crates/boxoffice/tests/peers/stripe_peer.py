"""localstripe (a stateful fake of Stripe's API, from PyPI) for boxoffice's Stripe tests.

Runs localstripe's own server unchanged, except that it keeps its objects in memory only:
localstripe writes every change to one shared file (/tmp/localstripe.pickle), which tests
running side by side, each with a peer of its own, would otherwise overwrite for each other.

Usage: python3 stripe_peer.py --port N   (exits when its standard input closes)
"""

import os
import sys
import threading

import localstripe.resources as resources
from localstripe.server import start

resources.Store.dump_to_disk = lambda self: None


def exit_when_stdin_closes():
    sys.stdin.read()
    os._exit(0)


threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
sys.argv = [sys.argv[0], "--from-scratch", *sys.argv[1:]]
start()
