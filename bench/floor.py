"""The floor: the keys gitops-sync wrote, put back by bare transactions of 128 puts, nothing parsed.

The harness saves the exact keys and values of a cold sync (:func:`keyspace.save`) and wipes etcd;
this script, started as its own process like the CLI, writes them back. No sync can do less work
than this, so "ours / floor" says how close to it we are.

    python bench/floor.py --keys FILE --etcd-host 127.0.0.1 --etcd-port PORT
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final

import etcd3
from keyspace import load

OPS_PER_TRANSACTION: Final = 128
"""etcd's default ``--max-txn-ops``."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=Path, required=True)
    parser.add_argument("--etcd-host", default="127.0.0.1")
    parser.add_argument("--etcd-port", type=int, required=True)
    options = parser.parse_args()
    client = etcd3.client(options.etcd_host, options.etcd_port)
    written = 0
    try:
        puts: list[object] = []
        for key, value in load(options.keys):
            puts.append(client.transactions.put(key, value))
            if len(puts) == OPS_PER_TRANSACTION:
                client.transaction(compare=[], success=puts, failure=[])
                written += len(puts)
                puts = []
        if puts:
            client.transaction(compare=[], success=puts, failure=[])
            written += len(puts)
    finally:
        client.close()
    print(f"{written} keys written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
