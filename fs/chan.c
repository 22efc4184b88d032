/*
 * chan.c - channel objects in the daemon: the rings' memory (a memfd the
 * daemon maps and lends to clients through passthrough; one ring, or two for
 * a duplex channel), who has the channel open in which role and on which
 * side, and the slow path: read, write, poll and the role ioctls, with
 * requests that must wait parked until a ring moves.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <syslog.h>
#include <unistd.h>

#include "fs.h"

static void park_free(struct parked *p);

/* pidfd_open flag for a thread's own pidfd (Linux 6.9; O_EXCL's value). */
#define IPCD_PIDFD_THREAD	0200

/* ---- ring memory -------------------------------------------------------- */

/*
 * The largest message: it must fit the ring, and a write(2) of it must reach
 * the daemon as one request, which the kernel guarantees up to max_write
 * less a page (a buffer that does not start on a page boundary spans one
 * page more).
 */
static uint32_t msg_max_for(uint64_t capacity)
{
	uint64_t m = capacity - sizeof(struct ipcd_ring_rec);
	uint32_t w = (ipcd->max_write ? ipcd->max_write : 131072) - 4096;

	return m < w ? (uint32_t)m : w;
}

/* Publish the daemon's truth about the peers (peers may have scribbled). */
static void publish_peers(struct chan *ch)
{
	struct rstate *rs;
	unsigned i;

	/* An end's open file going also ends what its holders said of it. */
	if (ch->anon && ch->map)
		atomic_store(&ch->rs[0].v.r->ends_open, ch->ends_open);
	for (i = 0; i < ch->nrings; i++) {
		rs = &ch->rs[i];
		atomic_store(&rs->v.r->writers_epoch,
			     ((uint64_t)rs->epoch << 32) | rs->writers);
		atomic_store(&rs->v.r->readers, rs->readers);
		atomic_store(&rs->v.r->daemon_pid, (uint32_t)getpid());
		/* Queues: every queue of the side says the same. */
		for (unsigned q = 1; ch->qs && q < ch->qs[i].n; q++) {
			struct ipcd_ring *r = ch->qs[i].q[q].r;

			atomic_store(&r->writers_epoch, ((uint64_t)rs->epoch << 32) | rs->writers);
			atomic_store(&r->readers, rs->readers);
			atomic_store(&r->daemon_pid, (uint32_t)getpid());
		}
	}
}

/* The daemon's own thread id in queues and reader slots: its pid, alive
 * as long as it serves the channel. */
static uint32_t daemon_id(void)
{
	return (uint32_t)getpid();
}

/* The largest message of a shared ring of capacity cap: what leaves
 * writer slots for SHARED_SLOTS writers (ring.h, "A ring of cells"). */
#define SHARED_SLOTS	8
#define SHARED_MIN_CAP	65536u

static uint32_t shared_msg_max(uint64_t cap)
{
	uint32_t m = msg_max_for(cap);
	uint64_t fit = cap / 2 / SHARED_SLOTS;

	return m < fit ? m : (uint32_t)fit;
}

static void free_coord(struct chan *ch)
{
	if (ch->st[0] != &ch->rs[0].v)
		free(ch->st[0]);
	ch->st[0] = ch->st[1] = NULL;
	ch->qs = NULL;
	ch->sh = NULL;
}

static int map_ring(struct chan *ch, uint64_t capacity, uint32_t features)
{
	unsigned i, n = (features & IPCD_RING_F_DUPLEX) ? 2 : 1;
	uint32_t coord = ch->coord;
	unsigned nq = coord == IPCD_COORD_QUEUES ? ipcd->queues : 0;
	/* Queues share the channel's capacity. */
	uint64_t qcap = nq ? capacity / nq : capacity;
	size_t len;
	void *map;
	int r;

	while (qcap & (qcap - 1))	/* a power of two, at most the share */
		qcap &= qcap - 1;
	if (qcap < IPCD_RING_MIN_CAPACITY)
		qcap = IPCD_RING_MIN_CAPACITY;
	/* A ring of cells leaves room for every writer slot's largest
	 * record: 64 KiB lets 8 writers reserve PIPE_BUF bytes each. */
	if (coord == IPCD_COORD_SHARED && qcap < SHARED_MIN_CAP)
		qcap = SHARED_MIN_CAP;
	len = ipcd_map_len_coord(qcap, features, coord, nq);
	if (!len)
		return -EINVAL;
	if (ftruncate(ch->memfd, 0) < 0 || ftruncate(ch->memfd, (off_t)len) < 0)
		return -errno;
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, ch->memfd, 0);
	if (map == MAP_FAILED)
		return -errno;
	/* rs[i] is the ring side i writes (with queues, its first). */
	r = ipcd_map_format(map, len, qcap, features,
			    coord == IPCD_COORD_SHARED ? shared_msg_max(qcap) : msg_max_for(qcap),
			    coord, nq);
	free_coord(ch);
	ch->ops = ipcd_coord_ops(coord);
	if (!r && ch->ops != &ipcd_coord_lock) {
		char *st = calloc(2, ch->ops->size);

		ch->st[0] = st;
		ch->st[1] = st ? st + ch->ops->size : NULL;
		if (!st)
			r = -ENOMEM;
	} else {
		ch->st[0] = &ch->rs[0].v;
		ch->st[1] = &ch->rs[1].v;
	}
	if (coord == IPCD_COORD_QUEUES)
		ch->qs = ch->st[0];
	else if (coord == IPCD_COORD_SHARED)
		ch->sh = ch->st[0];
	for (i = 0; i < n && !r; i++) {
		r = ipcd_view_attach_role(&ch->rs[i].v, map, len, i);
		if (!r && ch->st[i] != &ch->rs[i].v)
			r = ch->ops->attach(ch->st[i], map, len, i);
		/* The first queue, or writer slot, is the daemon's, for the
		 * slow path's writes: no thread of a client ever owns it, and
		 * they never wait for a client's. */
		if (!r && ch->sh)
			atomic_store(&ch->sh[i].ws[0].tid, daemon_id());
		if (!r && ch->qs)
			atomic_store(&ch->qs[i].q[0].r->owner, daemon_id());
		if (!r)
			ch->rs[i].v = *ch->ops->view(ch->st[i]);
	}
	if (r) {
		munmap(map, len);
		free_coord(ch);
		return r;
	}
	ch->map = map;
	ch->map_len = len;
	ch->cap = capacity;
	ch->features = features;
	ch->nrings = n;
	ch->nq = nq;
	publish_peers(ch);
	return 0;
}

/* Make the channel of inode `in` (called under mu). */
int chan_create(struct inode *in, uint64_t capacity, uint32_t features)
{
	struct chan *ch;
	int r;

	if (ipcd->nchannels >= ipcd->max_channels ||
	    ipcd->mem_used + capacity * ((features & IPCD_RING_F_DUPLEX) ? 2 : 1) >
	    ipcd->mem_limit)
		return -ENOSPC;
	ch = calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	ch->inode = in;
	CDS_INIT_LIST_HEAD(&ch->handles);
	CDS_INIT_LIST_HEAD(&ch->rs[0].parked_rd);
	CDS_INIT_LIST_HEAD(&ch->rs[0].parked_wr);
	CDS_INIT_LIST_HEAD(&ch->rs[1].parked_rd);
	CDS_INIT_LIST_HEAD(&ch->rs[1].parked_wr);
	CDS_INIT_LIST_HEAD(&ch->rs[0].ancs);
	CDS_INIT_LIST_HEAD(&ch->rs[1].ancs);
	CDS_INIT_LIST_HEAD(&ch->watch);
	ch->coord = ipcd->coord_default;
	ch->memfd = memfd_create("ipcd-ring", MFD_CLOEXEC);
	if (ch->memfd < 0) {
		r = -errno;
		free(ch);
		return r == -EMFILE || r == -ENFILE ? -ENOSPC : r;
	}
	r = map_ring(ch, capacity, features);
	if (r) {
		close(ch->memfd);
		free_coord(ch);
		free(ch);
		return r;
	}
	in->chan = ch;
	cds_list_add(&ch->all, &ipcd->chans);
	ipcd->created++;
	ipcd->nchannels++;
	ipcd->mem_used += capacity * ch->nrings;
	return 0;
}

/* Change kind or capacity; only while nobody has the channel open. */
int chan_reformat(struct chan *ch, uint64_t capacity, uint32_t features)
{
	uint64_t old_mem = ch->cap * ch->nrings;
	uint64_t new_mem = capacity * ((features & IPCD_RING_F_DUPLEX) ? 2 : 1);
	uint64_t old_cap = ch->cap;
	uint32_t old_features = ch->features;
	int r;

	if (ch->opens || ch->anon)
		return -EBUSY;
	if (ch->memfd < 0)
		return -ENOENT;
	if (capacity > ipcd->max_ring_size ||
	    ipcd->mem_used - old_mem + new_mem > ipcd->mem_limit)
		return -ENOSPC;
	ipcd->freed_bytes += chan_bytes(ch);	/* the counters start over */
	ipcd->freed_reused += chan_reused(ch);
	ipcd->freed_served += chan_served(ch);
	ipcd->freed_served_by[ch->coord] += chan_served(ch);
	anc_clear(&ch->rs[0]);
	anc_clear(&ch->rs[1]);
	munmap(ch->map, ch->map_len);
	ch->map = NULL;
	r = map_ring(ch, capacity, features);
	if (r) {
		/* Put the old rings back; their memory was cleared. */
		if (map_ring(ch, old_cap, old_features) < 0)
			ch->broken = true;
		return r;
	}
	ipcd->mem_used = ipcd->mem_used - old_mem + new_mem;
	ch->broken = false;
	return 0;
}

int chan_set_coord(struct chan *ch, uint32_t coord)
{
	uint32_t old = ch->coord;
	int r;

	if (coord > IPCD_COORD_MAX)
		return -EINVAL;
	if (ch->anon)	/* its kind decides (chan_pipes_coord) */
		return coord == old ? 0 : -EBUSY;
	if (coord == old)
		return 0;
	ch->coord = coord;
	r = chan_reformat(ch, ch->cap, ch->features);
	if (r)
		ch->coord = old;
	return r;
}

const char *chan_coord(const struct chan *ch)
{
	static const char *const names[] = IPCD_COORD_NAMES;

	return names[ch->coord <= IPCD_COORD_MAX ? ch->coord : 0];
}

void chan_reap(struct chan *ch)
{
	unsigned i;

	for (i = 0; ch->map && i < ch->nrings; i++)
		ch->ops->reap(ch->st[i]);
}

/* The ring features an anonymous channel of kind anon needs. */
uint32_t chan_anon_features(uint32_t anon)
{
	switch (anon) {
	case IPCD_ANON_PACKET: return IPCD_RING_F_MESSAGE;
	case IPCD_ANON_STREAM: return IPCD_RING_F_DUPLEX;
	case IPCD_ANON_DGRAM:
	case IPCD_ANON_SEQPACKET: return IPCD_RING_F_DUPLEX | IPCD_RING_F_MESSAGE;
	default: return 0;
	}
}

/*
 * The coordination of an anonymous channel of kind anon.  Pipes take the
 * mount's if it keeps a pipe's order: one shared ring does (a write that
 * began after another ended has the later ticket), queues do not (a
 * reader may take a later writer's queue first), so pipes keep the lock
 * then.  Socket pairs keep the lock, whose rings alone carry attachments
 * (SCM_RIGHTS).
 */
uint32_t chan_pipes_coord(uint32_t anon)
{
	if ((anon == IPCD_ANON_PIPE || anon == IPCD_ANON_PACKET) &&
	    ipcd->coord_default == IPCD_COORD_SHARED)
		return IPCD_COORD_SHARED;
	return IPCD_COORD_LOCK;
}

/*
 * Make a fresh channel nobody has open an anonymous one of kind anon: the
 * rings it needs, the kind in their headers, and a pipe's size.  Its next
 * two read-write opens marked O_NOATIME are its two ends (ring.h).
 */
int chan_set_anon(struct chan *ch, uint32_t anon)
{
	uint32_t features = chan_anon_features(anon), coord;
	unsigned i;
	int r;

	if (anon == IPCD_ANON_NONE || anon > IPCD_ANON_MAX)
		return -EINVAL;
	if (ch->opens || ch->anon)
		return -EBUSY;
	coord = chan_pipes_coord(anon);
	if (ch->coord != coord || features != ch->features) {
		ch->coord = coord;
		r = chan_reformat(ch, ch->cap, features);
		if (r)
			return r;
	}
	ch->anon = anon;
	((struct ipcd_map *)ch->map)->anon = anon;
	for (i = 0; i < ch->nrings; i++) {
		/* Pipe: end 1 writes the ring; socket pair: side s writes ring s. */
		ipcd_view_set_ends(&ch->rs[i].v, ch->rs[0].v.r, ch->nrings == 2 ? i : 1);
		if (ch->st[i] != &ch->rs[i].v)	/* the daemon reads and writes by it */
			ch->ops->set_ends(ch->st[i], ch->rs[0].v.r, ch->nrings == 2 ? i : 1);
		ch->rs[i].v.r->anon = anon;
		if ((anon == IPCD_ANON_PIPE || anon == IPCD_ANON_PACKET) &&
		    ch->cap > IPCD_PIPE_SIZE)
			atomic_store(&ch->rs[i].v.r->limit, IPCD_PIPE_SIZE);
	}
	return 0;
}

/* Free the ring once the channel has no name and no opener. */
void chan_free_ring(struct chan *ch)
{
	if (ch->memfd < 0)
		return;
	coord_unwatch(ch);
	ipcd->freed_bytes += chan_bytes(ch);
	ipcd->freed_reused += chan_reused(ch);
	ipcd->freed_served += chan_served(ch);
	ipcd->freed_served_by[ch->coord] += chan_served(ch);
	anc_clear(&ch->rs[0]);
	anc_clear(&ch->rs[1]);
	cds_list_del(&ch->all);
	if (ch->backing_id)
		pt_backing_close(ipcd, ch->backing_id);
	if (ch->map)
		munmap(ch->map, ch->map_len);
	close(ch->memfd);
	ch->memfd = -1;
	ch->backing_id = 0;
	ch->map = NULL;
	ipcd->nchannels--;
	ipcd->mem_used -= ch->cap * ch->nrings;
}

static const char *kind_name(uint32_t features)
{
	static const char *const kinds[] = IPCD_KIND_NAMES;

	return kinds[features & IPCD_RING_F_KNOWN];
}

/* Side i's tail (tails) or head, as bytes its rings moved (a ring of
 * cells counts whole cells). */
static uint64_t side_sum(const struct chan *ch, unsigned i, bool tails)
{
	return ch->map ? ch->ops->moved(ch->st[i], tails) : 0;
}

/* Bytes ever written into the channel's rings (by any path). */
uint64_t chan_bytes(const struct chan *ch)
{
	uint64_t sum = 0;
	unsigned i;

	for (i = 0; ch->map && i < ch->nrings; i++)
		sum += side_sum(ch, i, true);
	return sum;
}

/* How many more pipes a pair served after its first (ring.h, "Keeping"):
 * clients count them in ring 0. */
uint64_t chan_reused(const struct chan *ch)
{
	return ch->anon && ch->map ? atomic_load(&ch->rs[0].v.r->reuse) : 0;
}

/* How many pipes a pair served (ring.h, "Serving"). */
uint64_t chan_served(const struct chan *ch)
{
	return ch->anon && ch->map ? atomic_load(&ch->rs[0].v.r->served) : 0;
}

/*
 * A pair handed back to the factory (ring.h, "Pairs made ahead of time"):
 * may channel ino serve user uid:gid as a new pair?  Only if the factory's
 * two open files are all that is open on it, one per end, with no poll
 * pending; if its rings are idle (no lock, no attachment, no parked
 * request, no shutdown) and nobody is counted as holding an end.  Then it
 * becomes one: its rings emptied and their limits set back, no creator,
 * ring 0's reuse bumped if it had one, as the creator does for a pair it
 * keeps (so that what a reader kept to seek back over is forgotten).  Its kind and size
 * in *anon and *map_len; 0, or -EBUSY to refuse it.  Under ipcd->mu.
 */
int chan_recycle(fuse_ino_t ino, uid_t uid, gid_t gid, uint32_t *anon, uint64_t *map_len)
{
	struct inode *in = ns_inode(ino);
	struct chan *ch = in ? in->chan : NULL;
	struct ipcd_ring *r0;
	struct handle *h;
	unsigned ends = 0, i, e;

	if (!ch || !ch->anon || !ch->map || ch->broken || in->uid != uid || in->gid != gid ||
	    ch->opens != 2)
		return -EBUSY;
	cds_list_for_each_entry(h, &ch->handles, link) {
		if (h->end < 0 || h->end > 1 || h->ph)
			return -EBUSY;
		ends |= 1u << h->end;
	}
	if (ends != 3)
		return -EBUSY;
	for (i = 0; i < ch->nrings; i++) {
		struct rstate *rs = &ch->rs[i];
		struct ipcd_ring *r = rs->v.r;

		if (rs->readers != 1 || rs->writers != 1 || rs->nanc ||
		    !cds_list_empty(&rs->parked_rd) || !cds_list_empty(&rs->parked_wr) ||
		    atomic_load(&r->anc_at) || atomic_load(&r->state) ||
		    atomic_load(&r->wlock) || atomic_load(&r->rlock))
			return -EBUSY;
	}
	r0 = ch->rs[0].v.r;
	for (e = 0; e < 2; e++)
		for (i = 0; i < IPCD_HOLDERS; i++)
			if (atomic_load(&r0->holders[e][i]))
				return -EBUSY;
	/* Queues or a shared ring: only empty ones, their owners forgotten. */
	if (ipcd_map_recycle(ch->map, ch->map_len))
		return -EBUSY;
	for (i = 0; i < ch->nrings; i++) {
		struct ipcd_ring *r = ch->rs[i].v.r;

		atomic_store(&r->head, atomic_load(&r->tail));
		atomic_store(&r->limit, (ch->anon == IPCD_ANON_PIPE ||
					 ch->anon == IPCD_ANON_PACKET) &&
						ch->cap > IPCD_PIPE_SIZE ? IPCD_PIPE_SIZE : 0);
	}
	/* Counted as a pipe more only if it served one: a pair sent ahead
	 * and never taken has no creator (nor a reader anything kept). */
	if (atomic_exchange(&r0->creator, 0))
		atomic_fetch_add(&r0->reuse, 1);
	*anon = ch->anon;
	*map_len = ch->map_len;
	return 0;
}

/* A pair of channel ino handed to process pid: it made it, as SO_PEERCRED
 * says (a spare made for another).  Under ipcd->mu. */
void chan_set_cred(fuse_ino_t ino, pid_t pid)
{
	struct inode *in = ns_inode(ino);

	if (in && in->chan)
		in->chan->cred_pid = pid;
}

const char *chan_kind(const struct chan *ch)
{
	return kind_name(ch->features);
}

/* At exit: free the channel and all that hangs on it; parked requests get
 * ENOTCONN (the kernel may already have given up on them). */
void chan_destroy(struct chan *ch)
{
	struct handle *h, *ht;
	struct parked *p, *pt;
	unsigned i;

	for (i = 0; i < 2; i++) {
		cds_list_for_each_entry_safe(p, pt, &ch->rs[i].parked_rd, link) {
			fuse_reply_err(p->req, ENOTCONN);
			park_free(p);
		}
		cds_list_for_each_entry_safe(p, pt, &ch->rs[i].parked_wr, link) {
			fuse_reply_err(p->req, ENOTCONN);
			park_free(p);
		}
	}
	cds_list_for_each_entry_safe(h, ht, &ch->handles, link) {
		if (h->ph)
			fuse_pollhandle_destroy(h->ph);
		cds_list_del(&h->link);
		free(h->back);
		free(h);
	}
	chan_free_ring(ch);
	free_coord(ch);
	free(ch);
}

int chan_info(struct chan *ch, char *buf, size_t len)
{
	size_t at = 0;
	unsigned i;
	int n;

	n = snprintf(buf, len, "kind=%s capacity=%llu opens=%u fastpath=%s state=%s coord=%s",
		     chan_kind(ch), (unsigned long long)ch->cap, ch->opens,
		     ch->backing_id ? "on" : "off", ch->broken ? "broken" : "ok", chan_coord(ch));
	if (ch->qs && n > 0 && (size_t)n < len)
		n += snprintf(buf + n, len - (size_t)n, " queues=%u", ch->nq);
	if (n > 0 && (size_t)n < len)
		n += snprintf(buf + n, len - (size_t)n, " core_us=%llu",
			      (unsigned long long)(ch->core_ns / 1000));
	for (i = 0; i < ch->nrings && n > 0 && (size_t)n < len; i++) {
		struct rstate *rs = &ch->rs[i];
		uint64_t head = side_sum(ch, i, false);
		uint64_t tail = side_sum(ch, i, true);
		const char *sfx = ch->nrings == 1 ? "" : i ? "1" : "0";

		at = (size_t)n;
		n += snprintf(buf + at, len - at,
			      " buffered%s=%llu readers%s=%u writers%s=%u written%s=%llu read%s=%llu",
			      sfx, (unsigned long long)(tail - head <= ch->cap ? tail - head : 0),
			      sfx, rs->readers, sfx, rs->writers,
			      sfx, (unsigned long long)tail, sfx, (unsigned long long)head);
	}
	if (n > 0 && (size_t)n < len - 1) {
		buf[n++] = '\n';
		buf[n] = 0;
	}
	return n;
}

/* ---- breaking and peer accounting --------------------------------------- */

static void chan_break(struct chan *ch)
{
	unsigned i;

	if (ch->broken)
		return;
	ch->broken = true;
	ipcd_log(LOG_WARNING, "channel inode %llu: ring corrupted, failing it with EIO",
		 (unsigned long long)ch->inode->ino);
	for (i = 0; ch->map && i < ch->nrings; i++) {
		atomic_fetch_or(&ch->rs[i].v.r->state, IPCD_RING_S_BROKEN);
		ipcd_ring_wake_all(&ch->rs[i].v, IPCD_WAIT_DATA);
		ipcd_ring_wake_all(&ch->rs[i].v, IPCD_WAIT_SPACE);
	}
}

/* The ring a handle reads, and the one it writes. */
static struct rstate *in_ring(const struct handle *h)
{
	return &h->ch->rs[h->ch->nrings == 2 ? 1 - h->side : 0];
}

static struct rstate *out_ring(const struct handle *h)
{
	return &h->ch->rs[h->ch->nrings == 2 ? h->side : 0];
}

static void add_roles(struct handle *h, unsigned roles)
{
	struct rstate *in = in_ring(h), *out = out_ring(h);
	struct ipcd_view v;

	if (roles & IPCD_ROLE_READ)
		in->readers++;
	if ((roles & IPCD_ROLE_WRITE) && out->writers++ == 0) {
		/* A new generation of writers: readers that came while there
		 * was none may now see an end of file after it leaves. */
		if (++out->epoch == 0)
			out->epoch = 1;
		out->gen_tail = atomic_load(&out->v.r->tail);
		out->gen_real = false;
	}
	h->roles |= roles;
	publish_peers(h->ch);
	if (roles & IPCD_ROLE_READ) {
		v = in->v;
		ipcd_view_mark_open(&v);
		h->eof_epoch = v.eof_epoch;
		/* A pipe has no waiting for a writer: with none, end of file. */
		if (h->ch->anon)
			h->eof_epoch = in->epoch;
	}
}

static void drop_roles(struct handle *h, unsigned roles, bool narrowing)
{
	struct rstate *in = in_ring(h), *out = out_ring(h);
	struct chan *ch = h->ch;

	roles &= h->roles;
	h->roles &= ~roles;
	if ((roles & IPCD_ROLE_READ) && --in->readers == 0 && ch->map) {
		publish_peers(ch);
		ipcd_ring_wake_all(&in->v, IPCD_WAIT_SPACE);
	}
	/* A writer that leaves other than by narrowing (a close, a
	 * shutdown) was a real one, even if it never wrote. */
	if ((roles & IPCD_ROLE_WRITE) && !narrowing)
		out->gen_real = true;
	if ((roles & IPCD_ROLE_WRITE) && --out->writers == 0 && ch->map) {
		/* Opens that only narrowed themselves to reading, and never
		 * wrote, were never writers: take their epoch back.  Several
		 * such opens may overlap; the generation counts as a whole. */
		if (!out->gen_real && atomic_load(&out->v.r->tail) == out->gen_tail)
			out->epoch--;
		publish_peers(ch);
		ipcd_ring_wake_all(&out->v, IPCD_WAIT_DATA);
	}
	publish_peers(ch);
}

static bool want(struct rstate *rs, bool data, bool space);

/* ---- moving bytes for the slow path -------------------------------------- */

static struct ipcd_view read_view(struct handle *h)
{
	struct ipcd_view v = in_ring(h)->v;

	v.eof_epoch = h->eof_epoch;
	return v;
}

/* A read or write met another thread inside: look again soon, and with
 * the lock, take it over from a dead holder (then -EAGAIN: once more). */
static ssize_t after_busy(struct chan *ch, struct rstate *rs, void *st, enum ipcd_dir dir)
{
	int r;

	rs->busy = true;
	if (ch->ops != &ipcd_coord_lock)
		return -EBUSY;
	r = ipcd_ring_lock_reap(st, dir);
	if (r < 0)
		return -EIO;
	return r ? -EAGAIN : -EBUSY;
}

static ssize_t do_read(struct handle *h, void *buf, size_t size)
{
	struct chan *ch = h->ch;
	struct rstate *rs = in_ring(h);
	struct ipcd_view v;
	void *st = ch->st[rs - ch->rs];
	ssize_t n;
	int again = 0;

	if (ch->broken || !ch->map)
		return -EIO;
	/* Our own read must not wake the core for our own space interest;
	 * chan_progress counts us again afterwards. */
	want(rs, rs->want_data, false);
	/* A reader like any other, with this open file's end-of-file rule:
	 * the lock's view is a copy, the other designs' state the daemon's
	 * own. */
	if (st == &rs->v) {
		v = read_view(h);
		st = &v;
	} else {
		ch->ops->view(st)->eof_epoch = h->eof_epoch;
	}
	do {
		n = ch->ops->read(st, buf, size, daemon_id(), 0, NULL, NULL);
		if (n == -EBUSY)
			n = after_busy(ch, rs, st, IPCD_WAIT_DATA);
	} while (n == -EAGAIN && !again++);	/* a pad or a dead holder's lock */
	if (n == -EIO)
		chan_break(ch);
	if (n > 0) {
		ipcd->slow_bytes += (uint64_t)n;
		anc_sync(rs);	/* what we read past is dropped */
	}
	return n;
}

/* Write from buf[*done] on; returns 0 once all is in, else -errno. */
static int do_write(struct handle *h, const unsigned char *buf, size_t size,
		    size_t *done)
{
	struct chan *ch = h->ch;
	struct rstate *out = out_ring(h);
	ssize_t n;
	int again = 0;

	if (ch->broken || !ch->map)
		return -EIO;
	/* Likewise: our own write must not wake the core for our data interest. */
	want(out, false, out->want_space);
	while (*done < size || (size == 0 && *done == 0)) {
		/* Queues: the daemon's own, the first; a shared ring: in a
		 * writer slot of its own. */
		n = ch->ops->write(ch->st[out - ch->rs], buf + *done, size - *done, daemon_id(),
				   NULL);
		if (n == -EBUSY)
			n = after_busy(ch, out, ch->st[out - ch->rs], IPCD_WAIT_SPACE);
		if (n == -EAGAIN && !again++)
			continue;	/* a pad went in first, or a lock was reaped */
		if (n < 0) {
			if (n == -EIO)
				chan_break(ch);
			return (int)n;
		}
		*done += (size_t)n;
		ipcd->slow_bytes += (uint64_t)n;
		if ((ch->features & IPCD_RING_F_MESSAGE) || size == 0)
			break;
		again = 0;
	}
	return 0;
}

/* ---- poll --------------------------------------------------------------- */

static short handle_revents(struct handle *h)
{
	struct chan *ch = h->ch;
	struct rstate *out = out_ring(h);
	struct ipcd_view v;
	short rev = 0;

	if (ch->broken || !ch->map)
		return POLLERR;
	v = read_view(h);
	if (ch->ops->readable(ch->st[in_ring(h) - ch->rs]) < 0 ||
	    (!ch->sh && ipcd_ring_space(&out->v) < 0)) {
		chan_break(ch);
		return POLLERR;
	}
	if (h->roles & IPCD_ROLE_READ) {
		/* Cells reserved and not yet written are no data. */
		if (ch->ops->has_data(ch->st[in_ring(h) - ch->rs]))
			rev |= POLLIN | POLLRDNORM;
		if (ipcd_ring_hup(&v))
			rev |= POLLHUP;	/* as a pipe: data or not */
	}
	if (h->roles & IPCD_ROLE_WRITE) {
		if (ipcd_ring_readers(&out->v) == 0)
			rev |= POLLERR | POLLOUT | POLLWRNORM;	/* as a pipe */
		else if (ipcd_ring_can_write(&out->v, PIPE_BUF))
			rev |= POLLOUT | POLLWRNORM;
	}
	return rev;
}

static void snapshot(struct handle *h, uint64_t snap[8])
{
	struct chan *ch = h->ch;
	unsigned i;

	memset(snap, 0, 8 * sizeof(*snap));
	for (i = 0; i < ch->nrings; i++) {
		struct ipcd_ring *r = ch->rs[i].v.r;

		snap[4 * i] = side_sum(ch, i, true);
		snap[4 * i + 1] = side_sum(ch, i, false);
		/* A ring of cells: a record published after its cells were
		 * reserved moves no index. */
		snap[4 * i] ^= (uint64_t)ch->ops->has_data(ch->st[i]) << 63;
		/* The counts as the rules see them: holders leaving count. */
		snap[4 * i + 2] = atomic_load(&r->writers_epoch) ^
				  (uint64_t)ipcd_ring_hup(&ch->rs[i].v) << 31;
		snap[4 * i + 3] = ipcd_ring_readers(&ch->rs[i].v) |
				  (uint64_t)ch->broken << 32;
	}
}

static void drop_poll(struct handle *h, bool notify)
{
	if (!h->ph)
		return;
	if (notify)
		fuse_lowlevel_notify_poll(h->ph);
	fuse_pollhandle_destroy(h->ph);
	h->ph = NULL;
}

/* ---- parked requests and progress --------------------------------------- */

static void park_free(struct parked *p)
{
	cds_list_del(&p->link);
	free(p);
}

/* ---- reading ahead and seeking back (struct handle) ----------------------- */

/* A read at off got n bytes of buf from the ring. */
static void took(struct handle *h, uint64_t off, const unsigned char *buf, size_t n)
{
	size_t keep;

	h->pos = off + n;
	if (!h->back)
		h->back = malloc(IPCD_BACK_MAX);
	if (!h->back)
		return;
	if (n >= IPCD_BACK_MAX) {
		memcpy(h->back, buf + n - IPCD_BACK_MAX, IPCD_BACK_MAX);
		h->back_len = IPCD_BACK_MAX;
	} else {
		keep = h->back_len + n > IPCD_BACK_MAX ? IPCD_BACK_MAX - n : h->back_len;
		memmove(h->back, h->back + h->back_len - keep, keep);
		memcpy(h->back + keep, buf, n);
		h->back_len = keep + n;
	}
	h->back_head = atomic_load(&in_ring(h)->v.r->head);
	h->back_reuse = atomic_load(&h->ch->rs[0].v.r->reuse);
}

/*
 * A read at off that lies before where this handle's reads left the file
 * offset: the program seeked back over bytes it read.  If nobody has read
 * from the ring since, they are given again, as a file would; returns the
 * bytes given (> 0), or 0 to read from the ring.
 */
static size_t reread(struct handle *h, uint64_t off, size_t size, unsigned char *buf)
{
	size_t back;

	if (!h->back_len || off >= h->pos || h->pos - off > h->back_len ||
	    atomic_load(&in_ring(h)->v.r->head) != h->back_head ||
	    atomic_load(&h->ch->rs[0].v.r->reuse) != h->back_reuse)
		return 0;	/* read since, or a pipe made anew of the pair */
	back = (size_t)(h->pos - off);
	if (size > back)
		size = back;
	memcpy(buf, h->back + h->back_len - back, size);
	return size;
}

/*
 * A write through the daemon that found no reader: as the kernel does for
 * a pipe, FIFO or stream socket, the writing thread gets SIGPIPE before the
 * error reaches it.  Datagram socket pairs say ECONNREFUSED instead, and
 * sequenced-packet ones EPIPE alone.  Returns the errno to answer.
 */
static int no_reader(fuse_req_t req, const struct handle *h)
{
	pid_t tid = fuse_req_ctx(req)->pid;
	int pfd;

	if (h->ch->anon == IPCD_ANON_DGRAM)
		return ECONNREFUSED;
	if (h->ch->anon == IPCD_ANON_SEQPACKET || tid <= 0)
		return EPIPE;
	pfd = (int)syscall(SYS_pidfd_open, tid, IPCD_PIDFD_THREAD);
	if (pfd >= 0) {
		syscall(SYS_pidfd_send_signal, pfd, SIGPIPE, NULL, 0);
		close(pfd);
	} else {
		kill(tid, SIGPIPE);
	}
	return EPIPE;
}

static void finish_read(struct parked *p, unsigned char *buf, ssize_t n)
{
	if (n > 0)
		took(p->h, p->off, buf, (size_t)n);
	if (n >= 0)
		fuse_reply_buf(p->req, (const char *)buf, (size_t)n);
	else if (n == IPCD_EOF)
		fuse_reply_buf(p->req, NULL, 0);
	else
		fuse_reply_err(p->req, (int)-n);
	park_free(p);
}

static void finish_write(struct parked *p, int r)
{
	if (r == 0 || p->done > 0)
		fuse_reply_write(p->req, p->done);
	else if (r == -EPIPE)
		fuse_reply_err(p->req, no_reader(p->req, p->h));
	else
		fuse_reply_err(p->req, -r);
	park_free(p);
}

/* Count the daemon as a sleeper of a ring, or stop; true if newly counted. */
static bool want(struct rstate *rs, bool data, bool space)
{
	bool added = (data && !rs->want_data) || (space && !rs->want_space);

	if (data != rs->want_data)
		atomic_fetch_add(&rs->v.r->rd_sleepers, data ? 1 : -1);
	if (space != rs->want_space)
		atomic_fetch_add(&rs->v.r->wr_sleepers, space ? 1 : -1);
	rs->want_data = data;
	rs->want_space = space;
	return added;
}

static bool progress_once(struct chan *ch, unsigned char *buf)
{
	struct parked *p, *tmp;
	struct handle *h;
	bool data[2] = { false, false }, space[2] = { false, false };
	bool added = false, any = false;
	uint64_t snap[8];
	unsigned i;
	ssize_t n;
	int r;

	for (i = 0; i < ch->nrings; i++) {
		struct rstate *rs = &ch->rs[i];

		rs->busy = false;
		cds_list_for_each_entry_safe(p, tmp, &rs->parked_rd, link) {
			n = do_read(p->h, buf, p->size);
			if (n == -EAGAIN || n == -EBUSY)
				break;
			finish_read(p, buf, n);
		}
		cds_list_for_each_entry_safe(p, tmp, &rs->parked_wr, link) {
			r = do_write(p->h, p->data, p->size, &p->done);
			if (r == -EAGAIN || r == -EBUSY)
				break;
			finish_write(p, r);
		}
		data[i] = !cds_list_empty(&rs->parked_rd);
		space[i] = !cds_list_empty(&rs->parked_wr);
	}
	cds_list_for_each_entry(h, &ch->handles, link) {
		if (!h->ph)
			continue;
		snapshot(h, snap);
		if (memcmp(snap, h->snap, sizeof(snap)) != 0 || ch->broken) {
			drop_poll(h, true);
			continue;
		}
		if (h->poll_events & POLLIN)
			data[in_ring(h) - ch->rs] = true;
		if (h->poll_events & POLLOUT)
			space[out_ring(h) - ch->rs] = true;
	}
	for (i = 0; i < ch->nrings; i++) {
		if (ch->broken || !ch->map)
			data[i] = space[i] = false;
		added |= want(&ch->rs[i], data[i], space[i]);
		any |= data[i] || space[i];
	}
	if (any)
		coord_watch(ch);
	else
		coord_unwatch(ch);
	return added;
}

bool chan_busy(const struct chan *ch)
{
	return ch->rs[0].busy || ch->rs[1].busy;
}

/* Answer every parked request and poll the rings now allow (under mu). */
void chan_progress(struct chan *ch)
{
	/* Newly counted as a sleeper: a peer may have moved a ring just
	 * before it could see us, so look once more, after the barrier that
	 * peers' wake-ups count on (ipcd_barrier_sleep). */
	if (progress_once(ch, ipcd->rbuf)) {
		if (ch->coord != IPCD_COORD_LOCK && !ipcd_barrier_sleep())
			ipcd->sliced = true;
		progress_once(ch, ipcd->rbuf);
	}
}

/* Interrupt: answer EINTR if the request is still parked. */
static void interrupted(fuse_req_t req, void *data)
{
	struct chan *ch;
	struct parked *p, *tmp;
	unsigned i;

	(void)data;
	pthread_mutex_lock(&ipcd->mu);
	cds_list_for_each_entry(ch, &ipcd->watched, watch) {
		for (i = 0; i < ch->nrings; i++) {
			cds_list_for_each_entry_safe(p, tmp, &ch->rs[i].parked_rd, link)
				if (p->req == req) {
					fuse_reply_err(req, EINTR);
					park_free(p);
					goto out;
				}
			cds_list_for_each_entry_safe(p, tmp, &ch->rs[i].parked_wr, link)
				if (p->req == req) {
					finish_write(p, -EINTR);
					goto out;
				}
		}
	}
out:
	pthread_mutex_unlock(&ipcd->mu);
}

/*
 * An open of the ring file rf (fs.h): a handle on its channel with no role,
 * answered (by the caller) with the ring file's own passthrough id.
 * Returns 0 or a positive errno.
 */
int chan_open_ring(struct inode *rf, struct fuse_file_info *fi, struct handle **hp)
{
	struct chan *ch = rf->ring_of->chan;
	struct handle *h;
	int id;

	if (!ch || ch->memfd < 0 || !ch->map)
		return ENOENT;
	if ((fi->flags & O_ACCMODE) != O_RDWR)
		return EACCES;	/* it is only for mapping, shared and writable */
	if (ipcd->fastpath && !rf->backing_id) {
		id = pt_backing_open(ipcd, ch->memfd);
		if (id < 0)
			return -id;
		rf->backing_id = id;
	}
	h = calloc(1, sizeof(*h));
	if (!h)
		return ENOMEM;
	h->ch = ch;
	h->end = -1;
	cds_list_add_tail(&h->link, &ch->handles);
	ch->opens++;
	*hp = h;
	return 0;
}

/*
 * The roles and side of a new open of an anonymous channel (ring.h): the
 * pair's own two opens (read-write, O_NOATIME; O_APPEND on end 1) are its
 * ends.  Later opens (through /proc/PID/fd) get what the access mode says,
 * as a pipe reopened there does; a socket pair cannot be reopened.
 * Returns 0 or a positive errno.
 */
static int anon_end(struct chan *ch, int flags, unsigned *roles, unsigned *side,
		    int *endp)
{
	unsigned end = (flags & O_APPEND) ? 1 : 0;

	*endp = -1;
	if (!ch->anon)
		return 0;
	if ((flags & O_ACCMODE) == O_RDWR && (flags & O_NOATIME) &&
	    !(ch->ends_seen & (1u << end))) {
		ch->ends_seen |= 1u << end;
		ch->ends_open |= 1u << end;
		*endp = (int)end;
		if (ch->nrings == 2) {
			*side = end;
		} else {
			*roles = end ? IPCD_ROLE_WRITE : IPCD_ROLE_READ;
		}
		return 0;
	}
	return ch->nrings == 2 ? ENXIO : 0;
}

static struct handle *fh(struct fuse_file_info *fi)
{
	return (struct handle *)(uintptr_t)fi->fh;
}

/* ---- FUSE handlers ------------------------------------------------------ */

void chan_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct inode *in;
	struct chan *ch;
	struct handle *h;
	unsigned roles, side = 0;
	int id, end = -1, r = 0;

	switch (fi->flags & O_ACCMODE) {
	case O_RDONLY: roles = IPCD_ROLE_READ; break;
	case O_WRONLY: roles = IPCD_ROLE_WRITE; break;
	case O_RDWR: roles = IPCD_ROLE_READ | IPCD_ROLE_WRITE; break;
	default: fuse_reply_err(req, EINVAL); return;
	}
	pthread_mutex_lock(&ipcd->mu);
	in = ns_inode(ino);
	if (!in) {
		r = ENOENT;
		goto out;
	}
	if (in->ring_of) {
		r = chan_open_ring(in, fi, &h);
		if (r)
			goto out;
		ch = h->ch;
		id = in->backing_id;
		goto reply;
	}
	ch = in->chan;
	if (!ch) {
		r = EISDIR;
		goto out;
	}
	if (ch->memfd < 0 || !ch->map) {
		r = ch->memfd < 0 ? ENOENT : EIO;
		goto out;
	}
	if (ipcd->fastpath && !ch->backing_id) {
		/* One backing id per inode, kept for the channel's life. */
		id = pt_backing_open(ipcd, ch->memfd);
		if (id > 0) {
			ch->backing_id = id;
		} else if (ipcd->fastpath_mode == FASTPATH_REQUIRE) {
			ipcd_log(LOG_ERR, "the kernel refused a backing file (%s); "
				 "fastpath=require: failing the open", strerror(-id));
			r = EIO;
			goto out;
		} else {
			ipcd->fastpath = false;
			snprintf(ipcd->fastpath_why, sizeof(ipcd->fastpath_why),
				 "the kernel refused a backing file (%s)",
				 strerror(-id));
			ipcd_log(LOG_WARNING, "fast path off: %s; channels "
				 "work through read and write only",
				 ipcd->fastpath_why);
		}
	}
	r = anon_end(ch, fi->flags, &roles, &side, &end);
	if (r)
		goto out;
	h = calloc(1, sizeof(*h));
	if (!h) {
		r = ENOMEM;
		goto out;
	}
	h->ch = ch;
	h->side = side;
	h->end = end;
	cds_list_add_tail(&h->link, &ch->handles);
	ch->opens++;
	add_roles(h, roles);
	id = ch->backing_id;
reply:
	fi->fh = (uintptr_t)h;
	fi->direct_io = 1;
	fi->keep_cache = 0;
	/* No flush on close: nothing is cached, and a close costs no trip
	 * here.  Without passthrough a channel can also refuse to seek. */
	fi->noflush = 1;
	fi->nonseekable = !(id > 0 && ipcd->fastpath);
	if (id > 0 && ipcd->fastpath)
		pt_reply_open(req, fi->fh, id);
	else
		fuse_reply_open(req, fi);
	chan_progress(ch);
	pthread_mutex_unlock(&ipcd->mu);
	return;
out:
	pthread_mutex_unlock(&ipcd->mu);
	fuse_reply_err(req, r);
}

void chan_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct handle *h = fh(fi);
	struct chan *ch = h->ch;

	(void)ino;
	pthread_mutex_lock(&ipcd->mu);
	drop_poll(h, false);
	if (h->end >= 0)
		ch->ends_open &= ~(1u << h->end);
	drop_roles(h, h->roles, false);
	cds_list_del(&h->link);
	free(h->back);
	free(h);
	ch->opens--;
	if (ch->map) {
		chan_reap(ch);	/* the closer may have been the last of a process */
		chan_progress(ch);
	}
	if (ch->opens == 0 && ch->inode->nlink == 0) {
		chan_free_ring(ch);
		ns_maybe_free(ch->inode);
	}
	pthread_mutex_unlock(&ipcd->mu);
	fuse_reply_err(req, 0);
}

void chan_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	       struct fuse_file_info *fi)
{
	struct handle *h = fh(fi);
	struct parked *p;
	ssize_t n;

	(void)ino;
	if (!(h->roles & IPCD_ROLE_READ)) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if (size > IPCD_RBUF_SIZE)
		size = IPCD_RBUF_SIZE;
	fuse_req_interrupt_func(req, interrupted, NULL);
	if (fuse_req_interrupted(req)) {
		fuse_reply_err(req, EINTR);
		return;
	}
	pthread_mutex_lock(&ipcd->mu);
	/* Offsets mean nothing to a stream, but a read before where our last
	 * read left the offset went back over what that read took. */
	n = (ssize_t)reread(h, (uint64_t)off, size, ipcd->rbuf);
	if (n > 0) {
		fuse_reply_buf(req, (const char *)ipcd->rbuf, (size_t)n);
		pthread_mutex_unlock(&ipcd->mu);
		return;
	}
	if (!cds_list_empty(&in_ring(h)->parked_rd))
		n = -EAGAIN;	/* keep readers in arrival order */
	else
		n = do_read(h, ipcd->rbuf, size);
	if (n > 0)
		took(h, (uint64_t)off, ipcd->rbuf, (size_t)n);
	if (n == -EAGAIN || n == -EBUSY) {
		if (fi->flags & O_NONBLOCK) {
			fuse_reply_err(req, EAGAIN);
		} else if (!(p = calloc(1, sizeof(*p)))) {
			fuse_reply_err(req, ENOMEM);
		} else {
			p->req = req;
			p->h = h;
			p->size = size;
			p->off = (uint64_t)off;
			cds_list_add_tail(&p->link, &in_ring(h)->parked_rd);
			chan_progress(h->ch);
			coord_kick(ipcd);
		}
	} else if (n >= 0) {
		fuse_reply_buf(req, (const char *)ipcd->rbuf, (size_t)n);
		chan_progress(h->ch);
	} else if (n == IPCD_EOF) {
		fuse_reply_buf(req, NULL, 0);
	} else {
		fuse_reply_err(req, (int)-n);
		chan_progress(h->ch);
	}
	pthread_mutex_unlock(&ipcd->mu);
}

void chan_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
		off_t off, struct fuse_file_info *fi)
{
	struct handle *h = fh(fi);
	struct parked *p;
	size_t done = 0;
	int r;

	(void)ino;
	if (!(h->roles & IPCD_ROLE_WRITE)) {
		fuse_reply_err(req, EBADF);
		return;
	}
	fuse_req_interrupt_func(req, interrupted, NULL);
	if (fuse_req_interrupted(req)) {
		fuse_reply_err(req, EINTR);
		return;
	}
	pthread_mutex_lock(&ipcd->mu);
	if (!cds_list_empty(&out_ring(h)->parked_wr))
		r = -EAGAIN;	/* keep writers in arrival order */
	else
		r = do_write(h, (const unsigned char *)buf, size, &done);
	if ((r == -EAGAIN || r == -EBUSY) && (fi->flags & O_NONBLOCK)) {
		if (done)
			fuse_reply_write(req, done);
		else
			fuse_reply_err(req, EAGAIN);
	} else if (r == -EAGAIN || r == -EBUSY) {
		p = malloc(sizeof(*p) + size);
		if (!p) {
			fuse_reply_err(req, ENOMEM);
		} else {
			memset(p, 0, sizeof(*p));
			p->req = req;
			p->h = h;
			p->size = size;
			p->done = done;
			memcpy(p->data, buf, size);
			cds_list_add_tail(&p->link, &out_ring(h)->parked_wr);
			coord_kick(ipcd);
		}
	} else if (r == 0 || done) {
		fuse_reply_write(req, done);
	} else if (r == -EPIPE) {
		fuse_reply_err(req, no_reader(req, h));
	} else {
		fuse_reply_err(req, -r);
	}
	/* A read-write file's offset moves with writes too. */
	h->pos = (uint64_t)off + done;
	chan_progress(h->ch);
	pthread_mutex_unlock(&ipcd->mu);
}

void chan_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
	       struct fuse_pollhandle *ph)
{
	struct handle *h = fh(fi);
	short rev;

	(void)ino;
	pthread_mutex_lock(&ipcd->mu);
	rev = handle_revents(h);
	if (ph) {
		drop_poll(h, false);
		h->ph = ph;
		h->poll_events = (short)fi->poll_events;
		if (!h->poll_events)
			h->poll_events = POLLIN | POLLOUT;
		if (h->ch->map)
			snapshot(h, h->snap);
		chan_progress(h->ch);
		coord_kick(ipcd);	/* a fast-path peer must now wake the core */
	}
	pthread_mutex_unlock(&ipcd->mu);
	fuse_reply_poll(req, (unsigned)rev);
}

/* ANC_BIND and ANC_TAKE: the ring this open file writes, or reads. */
static void anc_ioctl(fuse_req_t req, struct handle *h, unsigned cmd,
		      const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	pid_t tid = fuse_req_ctx(req)->pid;
	struct ipcd_anc_bind b;
	struct ipcd_anc_take t;
	int err;

	if ((cmd == IPCD_IOC_ANC_BIND && in_bufsz != sizeof(b)) ||
	    (cmd == IPCD_IOC_ANC_TAKE && (in_bufsz != sizeof(t) || out_bufsz < sizeof(t)))) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	pthread_mutex_lock(&ipcd->mu);
	if (h->ch->broken || !h->ch->map) {
		err = EIO;
	} else if (cmd == IPCD_IOC_ANC_BIND) {
		memcpy(&b, in_buf, sizeof(b));
		err = (h->roles & IPCD_ROLE_WRITE) ? anc_bind(out_ring(h), &b, tid) : EBADF;
	} else {
		memcpy(&t, in_buf, sizeof(t));
		err = (h->roles & IPCD_ROLE_READ) ? anc_take(in_ring(h), &t, tid) : EBADF;
	}
	pthread_mutex_unlock(&ipcd->mu);
	if (err)
		fuse_reply_err(req, err);
	else if (cmd == IPCD_IOC_ANC_TAKE)
		fuse_reply_ioctl(req, 0, &t, sizeof(t));
	else
		fuse_reply_ioctl(req, 0, NULL, 0);
}

/*
 * QUEUE, CLAIM, RESERVE and TAKE: a peer without atomic operations asks the
 * daemon to make for its thread the one compare-and-swap or fetch-and-add
 * that a C end makes itself: take its queue, move a queue's claim to its
 * reader slot (queues), reserve a record's cells or take a record (one
 * shared ring).  CLAIM and RESERVE take a value in, all give one out.
 */
static void coord_ioctl(fuse_req_t req, struct handle *h, unsigned cmd, const void *in_buf,
			size_t in_bufsz, size_t out_bufsz)
{
	pid_t tid = fuse_req_ctx(req)->pid;
	bool queues = cmd == IPCD_IOC_QUEUE || cmd == IPCD_IOC_CLAIM;
	bool reads = cmd == IPCD_IOC_CLAIM || cmd == IPCD_IOC_TAKE;
	bool in = cmd == IPCD_IOC_CLAIM || cmd == IPCD_IOC_RESERVE;
	size_t size = queues ? sizeof(uint32_t) : sizeof(uint64_t);
	struct chan *ch = h->ch;
	uint64_t v = 0;
	uint32_t v32 = 0;
	int r;

	if (out_bufsz < size || (in && in_bufsz < size)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (in && queues)
		memcpy(&v32, in_buf, size);
	else if (in)
		memcpy(&v, in_buf, size);
	pthread_mutex_lock(&ipcd->mu);
	if (!(h->roles & (reads ? IPCD_ROLE_READ : IPCD_ROLE_WRITE)))
		r = -EBADF;
	else if (!ch->map || !(queues ? (void *)ch->qs : (void *)ch->sh))
		r = -EINVAL;
	else if (ch->broken)
		r = -EIO;
	else if (tid <= 0)
		r = -ENOSPC;
	else if (cmd == IPCD_IOC_CLAIM)
		r = ipcd_qset_claim(&ch->qs[in_ring(h) - ch->rs], v32, (uint32_t)tid);
	else if (cmd == IPCD_IOC_QUEUE)
		r = ipcd_qset_take(&ch->qs[out_ring(h) - ch->rs], (uint32_t)tid);
	else if (cmd == IPCD_IOC_RESERVE)
		r = v > UINT32_MAX ? -EMSGSIZE :
		    ipcd_shared_reserve(&ch->sh[out_ring(h) - ch->rs], (size_t)v,
					(uint32_t)tid, &v);
	else
		r = ipcd_shared_take(&ch->sh[in_ring(h) - ch->rs], (uint32_t)tid, &v);
	if (r == -EIO)
		chan_break(ch);
	pthread_mutex_unlock(&ipcd->mu);
	if (queues)
		v32 = r < 0 ? 0 : (uint32_t)r;
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_ioctl(req, 0, queues ? (const void *)&v32 : (const void *)&v, size);
}

void chan_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
		struct fuse_file_info *fi, unsigned flags, const void *in_buf,
		size_t in_bufsz, size_t out_bufsz)
{
	struct handle *h = fh(fi);
	uint32_t v;
	unsigned roles;
	int err = 0;

	(void)ino;
	(void)arg;
	if (flags & FUSE_IOCTL_COMPAT) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	if (cmd == IPCD_IOC_GETINFO) {
		struct ipcd_fileinfo info = { 0 };

		if (out_bufsz < sizeof(info)) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		pthread_mutex_lock(&ipcd->mu);
		info.roles = h->roles;
		info.side = h->side;
		info.eof_epoch = h->eof_epoch;
		info.map_pages = (uint32_t)(h->ch->map_len / 4096);
		pthread_mutex_unlock(&ipcd->mu);
		fuse_reply_ioctl(req, 0, &info, sizeof(info));
		return;
	}
	if (cmd == IPCD_IOC_GETROLE) {
		if (out_bufsz < sizeof(v)) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		pthread_mutex_lock(&ipcd->mu);
		v = h->roles | h->side << IPCD_SIDE_SHIFT;
		pthread_mutex_unlock(&ipcd->mu);
		fuse_reply_ioctl(req, 0, &v, sizeof(v));
		return;
	}
	if (cmd == IPCD_IOC_WAKE) {
		/* The doorbell of peers that cannot make futex calls. */
		pthread_mutex_lock(&ipcd->mu);
		if (h->ch->map && !h->ch->broken) {
			for (unsigned i = 0; i < h->ch->nrings; i++) {
				/* A shared ring's head, over what the peer freed. */
				if (h->ch->sh)
					ipcd_shared_advance(&h->ch->sh[i]);
				ipcd_ring_wake_all(&h->ch->rs[i].v, IPCD_WAIT_DATA);
				ipcd_ring_wake_all(&h->ch->rs[i].v, IPCD_WAIT_SPACE);
				/* Queues: a writer waits for space on its own. */
				for (unsigned q = 1; h->ch->qs && q < h->ch->qs[i].n; q++)
					ipcd_ring_wake_all(&h->ch->qs[i].q[q], IPCD_WAIT_SPACE);
			}
			chan_progress(h->ch);
		}
		pthread_mutex_unlock(&ipcd->mu);
		fuse_reply_ioctl(req, 0, NULL, 0);
		return;
	}
	if (cmd == IPCD_IOC_GETCRED) {
		struct ucred uc;

		if (out_bufsz < sizeof(uc)) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		pthread_mutex_lock(&ipcd->mu);
		uc.pid = h->ch->cred_pid;
		uc.uid = h->ch->cred_uid;
		uc.gid = h->ch->cred_gid;
		pthread_mutex_unlock(&ipcd->mu);
		if (!h->ch->anon)
			fuse_reply_err(req, ENOTTY);
		else
			fuse_reply_ioctl(req, 0, &uc, sizeof(uc));
		return;
	}
	if (cmd == IPCD_IOC_QUEUE || cmd == IPCD_IOC_CLAIM || cmd == IPCD_IOC_RESERVE ||
	    cmd == IPCD_IOC_TAKE) {
		coord_ioctl(req, h, cmd, in_buf, in_bufsz, out_bufsz);
		return;
	}
	if (cmd == IPCD_IOC_SYNC) {
		/* Requests are handled in order: every release the kernel
		 * queued before this one is through. */
		fuse_reply_ioctl(req, 0, NULL, 0);
		return;
	}
	if (cmd == IPCD_IOC_ANC_BIND || cmd == IPCD_IOC_ANC_TAKE) {
		anc_ioctl(req, h, cmd, in_buf, in_bufsz, out_bufsz);
		return;
	}
	if (cmd != IPCD_IOC_SETROLE && cmd != IPCD_IOC_SETSIDE &&
	    cmd != IPCD_IOC_SHUTROLE) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	if (in_bufsz != sizeof(v)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	memcpy(&v, in_buf, sizeof(v));
	pthread_mutex_lock(&ipcd->mu);
	if (cmd == IPCD_IOC_SETROLE || cmd == IPCD_IOC_SHUTROLE) {
		if (v & ~h->roles)
			err = EINVAL;
		else
			drop_roles(h, h->roles & ~v, cmd == IPCD_IOC_SETROLE);
	} else if (v > 1 || h->ch->nrings != 2) {
		err = EINVAL;
	} else if (v != h->side) {
		/* Another side is another pair of ends: leave, then join. */
		roles = h->roles;
		drop_roles(h, roles, true);
		h->side = v;
		add_roles(h, roles);
	}
	if (h->ch->map)
		chan_progress(h->ch);
	pthread_mutex_unlock(&ipcd->mu);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_ioctl(req, 0, NULL, 0);
}

void chan_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, 0);	/* nothing is stored */
}
