#!/usr/bin/env python3
"""shim_coord.py - writers, readers and checkers for t_shim_coord.sh.

Every program here moves its bytes with one os.read or os.write per record,
so that what reaches a pipe is exactly what PIPE_BUF atomicity speaks of;
the same programs run on kernel pipes (the reference) and under the shim.

  write NAME COUNT LEN|+PAD [AT]
                               COUNT lines of NAME to stdout, one write
                               each, starting at time AT (epoch seconds)
  check LEN|+PAD [--probe F] NAME:COUNT...
                               read stdin to its end; every line must be one
                               of the named writers' lines, byte for byte,
                               each writer's sequence 0..COUNT-1 once and in
                               order; prints a summary, details on failure
  records COUNT SIZE [AT]      COUNT records of SIZE bytes, one write each
  readrec SIZE OUT [--probe F] read stdin with reads of exactly SIZE bytes;
                               the sequence numbers of the whole records go
                               to OUT, anything else to OUT.err
  check-records COUNT SIZE OUT...
                               the readers' OUT files together: every record
                               exactly once, each reader's in rising order
  pool N [--probe F]           multiprocessing Pool(4) map and imap_unordered
  queue P C K [--probe F]      multiprocessing Queue: P producers of K items
                               each, C consumers

A line is "NAME SEQ <dots> NAME SEQ\n": with LEN > 0 padded to LEN bytes,
with +PAD the dots are PAD long, as a shell writes with
echo "$name $seq $dots $name $seq".  A line torn apart or mixed with
another's bytes cannot be a valid line: its name and number appear twice.
The probe file gets one line per pipe end looked at: what /proc says the
descriptor is, a tab, and the end's user.ipcd.coord (or "-").
"""
import hashlib
import os
import queue
import sys
import time

PIPE_BUF = 4096
# How long a multiprocessing wait may take (s): less than the harness's
# limit, so that a lost message is reported as such.
WAIT = float(os.environ.get("SHIM_COORD_WAIT", "100"))


def line(name, seq, length, pad):
    head = "%s %d " % (name, seq)
    tail = " %s %d\n" % (name, seq)
    n = length - len(head) - len(tail) if length > 0 else pad
    return (head + "." * n + tail).encode()


def record(seq, size):
    head = b"r%07d " % seq
    tail = b" r%07d\n" % seq
    fill = bytes([ord("a") + seq % 26])
    return head + fill * (size - len(head) - len(tail)) + tail


def wait_until(at):
    # Writers start together, so that they write at the same time.
    if at:
        d = float(at) - time.time()
        if d > 0:
            time.sleep(min(d, 5.0))


def write_all(fd, b, what):
    if len(b) > PIPE_BUF:
        sys.stderr.write("%s: a record of %d bytes, more than PIPE_BUF\n" % (what, len(b)))
        sys.exit(2)
    n = os.write(fd, b)
    if n != len(b):
        # A blocking write of at most PIPE_BUF bytes is all or nothing.
        sys.stderr.write("%s: a write of %d bytes wrote %d\n" % (what, len(b), n))
        sys.exit(1)


def probe(fd, path):
    if not path:
        return
    try:
        where = os.readlink("/proc/self/fd/%d" % fd)
    except OSError as e:
        where = "? %s" % e.strerror
    try:
        coord = os.getxattr(fd, "user.ipcd.coord").decode()
    except OSError:
        coord = "-"
    pfd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(pfd, ("%s\t%s\n" % (where, coord)).encode())
    os.close(pfd)


def opt(args, name):
    if name in args:
        i = args.index(name)
        v = args[i + 1]
        del args[i:i + 2]
        return v
    return None


def read_all(fd):
    parts = []
    while True:
        b = os.read(fd, 1 << 16)
        if not b:
            return b"".join(parts)
        parts.append(b)


def fmt_of(f):
    # LEN: lines of LEN bytes; +PAD: PAD dots.
    return (0, int(f[1:])) if f.startswith("+") else (int(f), 0)


def cmd_write(name, count, fmt, at=None):
    count = int(count)
    length, pad = fmt_of(fmt)
    wait_until(at)
    for seq in range(count):
        write_all(1, line(name, seq, length, pad), "writer " + name)


def cmd_check(args):
    p = opt(args, "--probe")
    probe(0, p)
    length, pad = fmt_of(args[0])
    want = {}
    for spec in args[1:]:
        name, count = spec.rsplit(":", 1)
        want[name] = int(count)
    data = read_all(0)
    errs = []
    nxt = {name: 0 for name in want}
    seen = {name: set() for name in want}
    lines = data.split(b"\n")
    tail = lines.pop()
    off = 0
    for no, raw in enumerate(lines, 1):
        ln = raw + b"\n"
        parts = raw.split(b" ")
        name = parts[0].decode("ascii", "replace")
        seq = int(parts[1]) if len(parts) == 5 and parts[1].isdigit() else -1
        whole = seq >= 0 and ln == line(name, seq, length, pad)
        if not whole:
            errs.append("line %d (byte %d) is no whole line of a writer (torn, interleaved or foreign), %d bytes: %r%s"
                        % (no, off, len(ln), raw[:120], "..." if len(raw) > 120 else ""))
        elif name not in want:
            errs.append("line %d (byte %d) is from no writer of this case: %r"
                        % (no, off, raw[:120]))
        elif seq in seen[name]:
            errs.append("writer %s: seq %d again at line %d (a duplicate)" % (name, seq, no))
        elif seq != nxt[name]:
            errs.append("writer %s: seq %d at line %d %s (%s)"
                        % (name, seq, no,
                           "after seq %d" % (nxt[name] - 1) if nxt[name] else "first",
                           "out of order" if seq < nxt[name] else
                           "seq %d..%d missing or late" % (nxt[name], seq - 1)))
            seen[name].add(seq)
            nxt[name] = max(nxt[name], seq + 1)
        else:
            seen[name].add(seq)
            nxt[name] = seq + 1
        off += len(ln)
    if tail:
        errs.append("the stream ends inside a line (a torn last write), %d bytes: %r"
                    % (len(tail), tail[:120]))
    for name, count in want.items():
        if len(seen[name]) != count or nxt[name] != count:
            miss = [s for s in range(count) if s not in seen[name]]
            errs.append("writer %s: %d of %d lines%s" % (
                name, len(seen[name]), count,
                ", missing seq " + ",".join(map(str, miss[:8])) + ("..." if len(miss) > 8 else "")
                if miss else ""))
    # The canonical stream: each writer's lines in order, writers by name.
    h = hashlib.sha256()
    for name in sorted(want):
        for seq in range(want[name]):
            if seq in seen[name]:
                h.update(line(name, seq, length, pad))
    print("lines=%d bytes=%d writers=%d canonical=%s" % (
        len(lines), len(data), len(want), h.hexdigest()[:16]))
    for e in errs[:8]:
        print("#   " + e)
    if len(errs) > 8:
        print("#   ... and %d more" % (len(errs) - 8))
    return 1 if errs else 0


def cmd_records(count, size, at=None):
    count, size = int(count), int(size)
    wait_until(at)
    for seq in range(count):
        write_all(1, record(seq, size), "record writer")


def cmd_readrec(args):
    p = opt(args, "--probe")
    probe(0, p)
    size, out = int(args[0]), args[1]
    got, errs, n = [], [], 0
    while True:
        # One read of exactly a record's size: on a pipe whose writes are
        # all whole records of that size, each read takes one whole record.
        b = os.read(0, size)
        if not b:
            break
        n += 1
        if len(b) != size:
            errs.append("read %d returned %d bytes, not %d: %r" % (n, len(b), size, b[:60]))
            continue
        seq = int(b[1:8]) if b[:1] == b"r" and b[1:8].isdigit() else -1
        if seq < 0 or b != record(seq, size):
            errs.append("read %d is no whole record: %r...%r" % (n, b[:40], b[-20:]))
            continue
        got.append(seq)
    with open(out, "w") as f:
        f.write("".join("%d\n" % s for s in got))
    if errs:
        with open(out + ".err", "w") as f:
            f.write("".join(e + "\n" for e in errs))


def cmd_check_records(count, size, *outs):
    count = int(count)
    errs, seen, per = [], {}, []
    for out in outs:
        r = os.path.basename(out)
        try:
            with open(out + ".err") as f:
                errs += ["reader %s: %s" % (r, e) for e in f.read().splitlines()]
        except FileNotFoundError:
            pass
        try:
            with open(out) as f:
                seqs = [int(s) for s in f.read().split()]
        except OSError as e:
            errs.append("reader %s left no list: %s" % (r, e.strerror))
            seqs = []
        per.append(len(seqs))
        last = -1
        for s in seqs:
            # One writer, one FIFO: each reader's records rise.
            if s <= last:
                errs.append("reader %s: record %d after record %d" % (r, s, last))
            last = s
            if s in seen:
                errs.append("record %d read twice (readers %s and %s)" % (s, seen[s], r))
            seen[s] = r
    miss = [s for s in range(count) if s not in seen]
    if miss:
        errs.append("%d of %d records never read: %s%s" % (
            len(miss), count, ",".join(map(str, miss[:8])), "..." if len(miss) > 8 else ""))
    extra = [s for s in seen if s >= count]
    if extra:
        errs.append("records beyond the last written: %s" % extra[:8])
    print("records=%d size=%s readers=%d" % (len(seen), size, len(outs)))
    # Which reader got how many depends on scheduling: the log only.
    print("#   per reader: %s" % "/".join(map(str, per)))
    for e in errs[:8]:
        print("#   " + e)
    if len(errs) > 8:
        print("#   ... and %d more" % (len(errs) - 8))
    return 1 if errs else 0


def square(x):
    return (x, x * x, bytes([x % 251]) * (x % 300))


def cmd_pool(args):
    import multiprocessing as mp
    p = opt(args, "--probe")
    n = int(args[0])
    ctx = mp.get_context("fork")
    errs = []
    with ctx.Pool(4) as pool:
        probe(pool._inqueue._reader.fileno(), p)
        probe(pool._outqueue._reader.fileno(), p)
        try:
            got = pool.map_async(square, range(n), chunksize=1).get(WAIT)
            bad = [i for i in range(n) if i >= len(got) or got[i] != square(i)]
            if bad or len(got) != n:
                errs.append("map: %d results, %d wrong, first %s" % (len(got), len(bad), bad[:5]))
        except Exception as e:
            errs.append("map: %s: %s" % (type(e).__name__, e))
        try:
            it = pool.imap_unordered(square, range(n))
            un = sorted(it.next(WAIT) for _ in range(n))
            bad2 = [i for i in range(n) if un[i] != square(i)]
            if bad2:
                errs.append("imap_unordered: %d wrong, first %s" % (len(bad2), bad2[:5]))
        except Exception as e:
            errs.append("imap_unordered: %s: %s" % (type(e).__name__, e))
        if errs:
            pool.terminate()
    print("pool workers=4 map=%d imap_unordered=%d" % (n, n))
    for e in errs:
        print("#   " + e)
    return 1 if errs else 0


def payload(p, seq):
    # Mostly small items, one message of one write each; every 50th one of
    # 20 KiB, which a Connection writes as a header and then a body larger
    # than PIPE_BUF, under the queue's lock: on a pipe no other message
    # comes between them.
    n = 20000 + p if seq % 50 == 49 else (p * 131 + seq * 17) % 700
    return bytes([(p * 7 + seq) % 256]) * n


def producer(q, p, k):
    for seq in range(k):
        q.put((p, seq, payload(p, seq)))


def consumer(q, res, c):
    got, bad = [], []
    while True:
        try:
            m = q.get(timeout=WAIT)
        except Exception as e:
            sys.stderr.write("consumer %d: get: %s: %s\n" % (c, type(e).__name__, e))
            sys.exit(1)
        if m is None:
            break
        p, seq, b = m
        if b != payload(p, seq):
            bad.append((p, seq, len(b)))
        got.append((p, seq))
    res.put((c, got, bad))


def wait_all(procs, watch, deadline):
    """Wait for procs to end; give up at the deadline or when one of watch
    has ended with an error."""
    while time.time() < deadline:
        if all(x.exitcode is not None for x in procs):
            return all(x.exitcode == 0 for x in procs)
        if any(x.exitcode not in (None, 0) for x in watch):
            return False
        time.sleep(0.02)
    return False


def exits(procs):
    return "exit statuses " + " ".join(
        "running" if x.exitcode is None else str(x.exitcode) for x in procs)


def cmd_queue(args):
    import multiprocessing as mp
    pr = opt(args, "--probe")
    np_, nc, k = int(args[0]), int(args[1]), int(args[2])
    ctx = mp.get_context("fork")
    q, res = ctx.Queue(), ctx.Queue()
    probe(q._reader.fileno(), pr)
    cons = [ctx.Process(target=consumer, args=(q, res, c)) for c in range(nc)]
    prods = [ctx.Process(target=producer, args=(q, p, k)) for p in range(np_)]
    for x in cons + prods:
        x.start()
    errs = []
    deadline = time.time() + WAIT
    # A consumer that fails leaves the producers blocked on a full pipe:
    # stop at once, rather than at the time limit.
    if not wait_all(prods, cons, deadline):
        errs.append("the producers did not finish: producers' %s; consumers' %s"
                    % (exits(prods), exits(cons)))
        for x in cons + prods:
            x.kill()
        print("queue producers=%d consumers=%d items=?" % (np_, nc))
        for e in errs:
            print("#   " + e)
        return 1
    # Every producer's items are in the pipe before the consumers' ends.
    for _ in range(nc):
        q.put(None)
    # The consumers hand back what they took through a second queue, two
    # writers of messages of tens of KiB (a header and a body each).
    results = []
    while len(results) < nc and time.time() < deadline:
        ended = all(x.exitcode is not None for x in cons)
        try:
            results.append(res.get(timeout=0.2))
        except queue.Empty:
            if ended:
                break
        except Exception as e:
            errs.append("the result queue's get (messages from %d consumers): %s: %s"
                        % (nc, type(e).__name__, e))
            break
    if len(results) < nc:
        errs.append("%d of %d consumers' results came back (%s)" % (len(results), nc, exits(cons)))
    wait_all(cons, [], deadline)
    for x in cons:
        if x.exitcode != 0:
            errs.append("consumer exit status %s" % x.exitcode)
            x.kill()
    seen = {}
    per = []
    for c, got, bad in sorted(results):
        per.append(len(got))
        for p, seq, n in bad[:3]:
            errs.append("consumer %d: item %d of producer %d has %d wrong bytes" % (c, seq, p, n))
        last = {}
        for p, seq in got:
            # One feeder per producer, one FIFO: each consumer sees each
            # producer's items in order.
            if seq <= last.get(p, -1):
                errs.append("consumer %d: producer %d item %d after item %d" % (c, p, seq, last[p]))
            last[p] = seq
            if (p, seq) in seen:
                errs.append("producer %d item %d taken twice (consumers %d and %d)"
                            % (p, seq, seen[(p, seq)], c))
            seen[(p, seq)] = c
    for p in range(np_):
        miss = [s for s in range(k) if (p, s) not in seen]
        if miss:
            errs.append("producer %d: %d of %d items never taken, first %s" % (p, len(miss), k, miss[:8]))
    print("queue producers=%d consumers=%d items=%d" % (np_, nc, len(seen)))
    print("#   per consumer: %s" % "/".join(map(str, per)))
    for e in errs[:8]:
        print("#   " + e)
    return 1 if errs else 0


def main():
    a = sys.argv[1:]
    cmd = a.pop(0)
    if cmd == "write":
        return cmd_write(*a)
    if cmd == "check":
        return cmd_check(a)
    if cmd == "records":
        return cmd_records(*a)
    if cmd == "readrec":
        return cmd_readrec(a)
    if cmd == "check-records":
        return cmd_check_records(*a)
    if cmd == "pool":
        return cmd_pool(a)
    if cmd == "queue":
        return cmd_queue(a)
    sys.stderr.write("shim_coord.py: unknown command %s\n" % cmd)
    return 2


if __name__ == "__main__":
    sys.exit(main() or 0)
