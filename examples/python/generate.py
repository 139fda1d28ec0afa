#!/usr/bin/env python3
"""Generates the Python stubs of the contract (proto/contactcache/v1) into a build folder.

    python3 generate.py [--out build/gen]

Nothing generated is checked in: run this after every change of proto/. It uses
grpc_tools.protoc (pip package grpcio-tools), which bundles protoc and the well-known types
(google/protobuf/timestamp.proto).
"""

import argparse
import os
import sys

import grpc_tools
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))
FILES = ["contactcache/v1/contactcache.proto"]


def generate(out: str) -> None:
    """Writes contactcache/v1/contactcache_pb2.py and _pb2_grpc.py under `out`."""
    os.makedirs(out, exist_ok=True)
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *FILES,
    ]
    if protoc.main(args) != 0:
        sys.exit(f"generate.py: protoc failed on {', '.join(FILES)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(HERE, "build", "gen"), help="where the stubs go")
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
