#!/usr/bin/env python3
"""A reference EMR connector in Python for the contact cache (contactcache.v1).

Reads an appointment export (CSV with the columns of testdata/contacts.csv), streams its
rows to the cache with PutContacts over mutual TLS as one site's `emr` caller, writes each
row's GUID to a map file (row_id,guid,expires_at, owner-only), and prints a summary. With
an operator's `admin` certificate it also reads the cache's Stats. See docs/vendors.md.

    python3 generate.py          # the stubs, into build/gen (once per change of proto/)
    python3 connector.py --target 127.0.0.1:50051 --server-name localhost \\
        --ca certs/ca.pem --cert certs/emr-site-1001.pem --key certs/emr-site-1001.key \\
        site-1001.csv

Nothing this prints holds a phone number or an email: a refused row is named by its line,
its row id and the field, as `FILE:LINE: row ID: FIELD: message`, and the cache's own
messages never repeat a value.

Exit codes, as the Rust connector's: 0 every row pushed or skipped; 64 bad flags; 65 a row
refused (or an unusable header); 66 the CSV cannot be read; 69 the cache unreachable or
full, after the retries (run again later); 70 anything else; 73 the map cannot be written;
77 the cache refused the certificate.
"""

import argparse
import collections
import csv
import datetime
import os
import random
import sys
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))

COLUMNS = ["row_id", "site_id", "provider_id", "campaign_id", "phone", "email", "language",
           "time_zone", "appointment_at", "channel"]
SERVICE = "contactcache.v1.ContactCache"
MAX_SEND_AFTER = datetime.timedelta(days=30)  # the longest retention a cache can have

EXIT_OK, EXIT_USAGE, EXIT_DATA, EXIT_NO_INPUT = 0, 64, 65, 66
EXIT_UNAVAILABLE, EXIT_SOFTWARE, EXIT_CANT_CREATE, EXIT_NO_PERM = 69, 70, 73, 77

# What a status that ends the whole stream means for the rows not yet answered
# (docs/vendors.md, "Status codes").
RETRY = {  # the cache or the path to it, for now: back off and send them again
    grpc.StatusCode.UNAVAILABLE,         # unreachable, draining, or its audit log failing
    grpc.StatusCode.RESOURCE_EXHAUSTED,  # this caller locked out for a window
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
}
NOT_ALLOWED = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
# Item codes that mean the row itself is wrong: sending it again fails again.
ROW_AT_FAULT = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OUT_OF_RANGE}
CODE_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class NotServing(Exception):
    """grpc.health.v1 says the cache is not serving (it is draining, say): retry later."""


class Stop(Exception):
    """The run cannot go on: a message for stderr and an exit code."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def load_stubs(folder):
    """Imports the generated modules from `folder` (generate.py writes them there)."""
    sys.path.insert(0, folder)
    try:
        from contactcache.v1 import contactcache_pb2, contactcache_pb2_grpc
    except ImportError as e:
        raise Stop(f"no stubs in {folder} ({e}): run generate.py first", EXIT_SOFTWARE) from e
    return contactcache_pb2, contactcache_pb2_grpc


class Parser(argparse.ArgumentParser):
    """argparse, with the exit code of bad flags that the Rust connector uses (64)."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class Row:
    """One good line: where it came from, and the request to send. Its repr holds no value."""

    __slots__ = ("line", "row_id", "request")

    def __init__(self, line, row_id, request):
        self.line, self.row_id, self.request = line, row_id, request

    def __repr__(self):
        return f"Row(line={self.line}, row_id={self.row_id!r})"


def read_rows(path, pb, already, send_after_hours, max_message_bytes, now, report):
    """The good rows of the CSV not in `already`; refused ones go to `report`. Returns
    (rows, refused, skipped)."""
    rows, refused, skipped, seen = [], 0, 0, {}
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise Stop(f"{path}: {e.strerror}", EXIT_NO_INPUT) from e
    with handle:
        reader = csv.reader(handle)
        try:
            header = [name.strip().lower() for name in next(reader, [])]
        except (csv.Error, UnicodeDecodeError) as e:
            raise Stop(f"{path}: the header is unreadable", EXIT_DATA) from e
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise Stop(f"{path}: missing column(s) {', '.join(missing)}", EXIT_DATA)
        at = {c: header.index(c) for c in COLUMNS}
        end = reader.line_num
        while True:
            try:
                record = next(reader, None)
            except (csv.Error, UnicodeDecodeError) as e:
                raise Stop(f"{path}: line {end + 1}: the CSV is unreadable", EXIT_DATA) from e
            if record is None:
                break
            line, end = end + 1, reader.line_num
            if not record:
                continue  # a blank line
            cells = {c: (record[i].strip() if i < len(record) else "") for c, i in at.items()}
            row_id = cells["row_id"]

            def refuse(field, message):
                nonlocal refused
                refused += 1
                report(f"{path}:{line}: row {row_id or '?'}: {field}: {message}")

            if not row_id or len(row_id) > 64 or not all(ch.isalnum() or ch in "._:-" for ch in row_id):
                row_id = ""
                refuse("row_id", "must be 1 to 64 of letters, digits and . _ : -")
                continue
            if row_id in seen:
                refuse("row_id", f"repeats the row id of line {seen[row_id]}")
                continue
            seen[row_id] = line
            if row_id in already:
                skipped += 1
                continue
            channel = {"": pb.CHANNEL_UNSPECIFIED, "sms": pb.CHANNEL_SMS, "email": pb.CHANNEL_EMAIL,
                       "any": pb.CHANNEL_ANY}.get(cells["channel"].lower())
            if channel is None:
                refuse("contact.channel", "must be sms, email or any")
                continue
            try:
                appointment = datetime.datetime.fromisoformat(cells["appointment_at"])
            except ValueError:
                appointment = None
            if appointment is None or appointment.tzinfo is None:
                refuse("appointment_at", "is not an RFC 3339 time with an offset")
                continue
            send_after = max(appointment + datetime.timedelta(hours=send_after_hours), now)
            if send_after > now + MAX_SEND_AFTER:
                refuse("appointment_at", "is further ahead than any cache keeps a contact")
                continue
            contact = pb.Contact(
                site_id=cells["site_id"], provider_id=cells["provider_id"],
                campaign_id=cells["campaign_id"],
                # The cache takes E.164 only (+16135550101). An EMR that writes national
                # numbers should normalise them first (the Rust connector does, with
                # libphonenumber; in Python, the `phonenumbers` package).
                phone=cells["phone"], email=cells["email"], language=cells["language"],
                time_zone=cells["time_zone"], channel=channel)
            contact.send_after.FromDatetime(send_after.astimezone(datetime.timezone.utc))
            request = pb.PutContactRequest(contact=contact)
            # The cache refuses a larger message with RESOURCE_EXHAUSTED, ending the stream.
            if request.ByteSize() > max_message_bytes:
                refuse("contact", f"is over the cache's store.max_message_bytes ({max_message_bytes})")
                continue
            rows.append(Row(line, row_id, request))
    return rows, refused, skipped


def read_map(path):
    """The row ids already pushed (the map's first column); none if there is no map."""
    try:
        with open(path, newline="") as handle:
            lines = list(csv.reader(handle))
    except FileNotFoundError:
        return set()
    except OSError as e:
        raise Stop(f"{path}: {e.strerror}", EXIT_CANT_CREATE) from e
    if not lines or lines[0] != ["row_id", "guid", "expires_at"]:
        raise Stop(f"{path}:1: not a row_id,guid,expires_at map", EXIT_DATA)
    return {line[0] for line in lines[1:] if line}


class GuidMap:
    """The map file, owner-only, appended to as each result arrives."""

    def __init__(self, path):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as e:
            raise Stop(f"{path}: {e.strerror}", EXIT_CANT_CREATE) from e
        self.path, self.file = path, os.fdopen(fd, "a", newline="")
        if self.file.tell() == 0:
            self.append("row_id", "guid", "expires_at")

    def append(self, *fields):
        try:
            self.file.write(",".join(fields) + "\n")
            self.file.flush()
        except OSError as e:
            raise Stop(f"{self.path}: {e.strerror}", EXIT_CANT_CREATE) from e

    def close(self):
        os.fsync(self.file.fileno())
        self.file.close()


def channel_to(target, server_name, ca, cert, key):
    """A mutual-TLS channel to the cache presenting `cert`."""
    def read(path):
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except OSError as e:
            raise Stop(f"{path}: {e.strerror}", EXIT_USAGE) from e

    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(ca), private_key=read(key), certificate_chain=read(cert))
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    # A long stream has no deadline of its own; keep-alive pings notice a dead peer.
    options += [("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_timeout_ms", 20_000)]
    return grpc.secure_channel(target, credentials, options=options)


def check_health(channel, timeout):
    """Raises NotServing (or a gRPC error) unless grpc.health.v1 says the cache is SERVING."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    answer = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=SERVICE), timeout=timeout)
    if answer.status != health_pb2.HealthCheckResponse.SERVING:
        raise NotServing(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))


def backoff(attempt, base=0.5, cap=30.0):
    """Full-jitter exponential backoff: a random wait up to base * 2^attempt, at most cap."""
    return random.uniform(0, min(cap, base * 2 ** attempt))


def push(stub, rows, gmap, args, counts, report):
    """Streams `rows` with PutContacts; sends the unanswered ones again after a retryable
    status, up to args.attempts streams in all."""
    pending = collections.deque(rows)
    for attempt in range(args.attempts):
        if attempt:
            wait = backoff(attempt)
            report(f"connector: retrying {len(pending)} row(s) in {wait:.1f}s "
                   f"(attempt {attempt + 1} of {args.attempts})")
            time.sleep(wait)
        sent = list(pending)
        try:
            check_health(stub.channel, args.connect_timeout)
            results = stub.stub.PutContacts((row.request for row in sent), timeout=args.timeout)
            for index, result in enumerate(results):
                if result.index != index or not pending:
                    raise Stop(f"result {result.index} came where {index} was expected", EXIT_SOFTWARE)
                row = pending.popleft()
                where = f"{args.csv}:{row.line}: row {row.row_id}"
                if not result.HasField("error"):
                    gmap.append(row.row_id, result.guid, result.expires_at.ToJsonString())
                    counts["pushed"] += 1
                    continue
                code = CODE_BY_NUMBER.get(result.error.code, grpc.StatusCode.UNKNOWN)
                field = result.error.field
                message = result.error.message.removeprefix(f"{field}: ") if field else result.error.message
                if code in ROW_AT_FAULT:
                    counts["refused"] += 1
                    report(f"{where}: {field or 'contact'}: {message}")
                else:  # RESOURCE_EXHAUSTED: the cache is full; INTERNAL: it failed. Later.
                    counts["unsent"] += 1
                    report(f"{where}: not stored now ({code.name}): {message}")
            if pending:
                raise Stop(f"the stream ended with {len(pending)} row(s) unanswered", EXIT_UNAVAILABLE)
            return
        except NotServing as e:
            report(f"connector: health: {e}")
        except grpc.RpcError as e:
            code = e.code()
            if code in NOT_ALLOWED:
                raise Stop(f"the cache refused this connector's certificate: {code.name}: {e.details()}",
                           EXIT_NO_PERM) from e
            if code not in RETRY:
                raise Stop(f"the cache failed the call: {code.name}: {e.details()}", EXIT_SOFTWARE) from e
            # Rows that were on the wire may have been stored without an answer; those few get
            # a second GUID when sent again (the first expires unused).
            report(f"connector: {code.name}: {e.details()}")
    counts["unsent"] += len(pending)
    raise Stop(f"the cache is unavailable after {args.attempts} attempts; run again later",
               EXIT_UNAVAILABLE)


class Cache:
    """A stub and the channel under it."""

    def __init__(self, channel, stub):
        self.channel, self.stub = channel, stub


def main(argv=None):
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", help="the EMR export")
    parser.add_argument("--target", default="127.0.0.1:50051", help="the cache, host:port")
    parser.add_argument("--server-name", default="", help="the name in the cache's certificate")
    parser.add_argument("--ca", required=True, help="the CA that signed the cache's certificate")
    parser.add_argument("--cert", required=True, help="this connector's certificate (role emr, one site)")
    parser.add_argument("--key", required=True, help="this connector's private key")
    parser.add_argument("--map", help="the GUID map [default: CSV.guids.csv]")
    parser.add_argument("--send-after-hours", type=int, default=2, help="delay after the appointment")
    parser.add_argument("--max-message-bytes", type=int, default=16384,
                        help="the cache's store.max_message_bytes")
    parser.add_argument("--attempts", type=int, default=5, help="PutContacts streams at most")
    parser.add_argument("--connect-timeout", type=float, default=10.0, help="seconds")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for one stream")
    parser.add_argument("--admin-cert", help="an operator's certificate, to read Stats")
    parser.add_argument("--admin-key", help="its key")
    parser.add_argument("--stubs", default=os.path.join(HERE, "build", "gen"),
                        help="where generate.py wrote the stubs")
    args = parser.parse_args(argv)
    if args.attempts < 1 or not 0 <= args.send_after_hours <= 720:
        parser.error("--attempts must be at least 1, --send-after-hours 0 to 720")
    args.map = args.map or f"{args.csv}.guids.csv"

    def report(line):
        print(line, file=sys.stderr, flush=True)

    counts = collections.Counter(pushed=0, skipped=0, refused=0, unsent=0)
    code = EXIT_OK
    try:
        pb, pb_grpc = load_stubs(args.stubs)
        now = datetime.datetime.now(datetime.timezone.utc)
        already = read_map(args.map)
        rows, counts["refused"], counts["skipped"] = read_rows(
            args.csv, pb, already, args.send_after_hours, args.max_message_bytes, now, report)
        if rows:
            gmap = GuidMap(args.map)
            channel = channel_to(args.target, args.server_name, args.ca, args.cert, args.key)
            try:
                push(Cache(channel, pb_grpc.ContactCacheStub(channel)), rows, gmap, args, counts, report)
            finally:
                gmap.close()
                channel.close()
    except Stop as stop:
        report(f"connector: {stop}")
        code = stop.code
    summary = (f"pushed {counts['pushed']}, skipped {counts['skipped']} (already in the map), "
               f"refused {counts['refused']} (see above)")
    if counts["unsent"]:
        summary += f", not sent {counts['unsent']} (run again to send them)"
    print(summary, flush=True)

    # The emr role may only put and delete its own site's contacts: it reads nothing back.
    # What it keeps is the map. An operator's certificate reads the cache's counts.
    if args.admin_cert and args.admin_key and code in (EXIT_OK, EXIT_DATA):
        try:
            with channel_to(args.target, args.server_name, args.ca, args.admin_cert, args.admin_key) as admin:
                stats = pb_grpc.ContactCacheStub(admin).Stats(pb.StatsRequest(), timeout=args.connect_timeout)
            print(f"cache: {stats.entries} contacts held, {stats.day_keys} day keys, retention "
                  f"{stats.retention_days} days, memory locked: {str(stats.memory_locked).lower()}, "
                  f"instance {stats.instance_epoch:016x} (Stats, as admin)", flush=True)
        except grpc.RpcError as e:
            report(f"connector: Stats: {e.code().name}: {e.details()}")
            code = EXIT_SOFTWARE
    if code == EXIT_OK and counts["unsent"]:
        code = EXIT_UNAVAILABLE
    elif code == EXIT_OK and counts["refused"]:
        code = EXIT_DATA
    return code


if __name__ == "__main__":
    sys.exit(main())
