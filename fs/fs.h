/*
 * fs.h - the ipcd daemon's internal interfaces: the mount-wide state, the
 * namespace (inodes and directory entries), channel objects, the
 * coordination core and the passthrough set-up.
 *
 * Locking: one mutex, fs->mu, guards every structure below.  Two threads
 * take it: the FUSE session thread (all requests, in order) and the
 * coordination core.  No handler ever blocks while holding it; a request
 * that must wait is parked and answered later by whichever thread sees the
 * ring move.  The fast path never touches fs->mu.
 */
#ifndef IPCD_FS_H
#define IPCD_FS_H

#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <urcu.h>
#include <urcu/list.h>
#include <urcu/rculfhash.h>

#include "../core/ringops.h"
#include "../core/coord.h"

struct chan;

struct inode {
	fuse_ino_t ino;
	mode_t mode;			/* S_IFDIR or S_IFREG (a channel), and bits */
	uid_t uid;
	gid_t gid;
	nlink_t nlink;			/* names (plus subdirectories for a dir) */
	uint64_t nlookup;		/* the kernel's references */
	struct timespec atime, mtime, ctime;
	struct cds_lfht_node node;	/* in fs->inodes, by ino */
	struct rcu_head rcu;
	struct cds_list_head children;	/* dir: struct dentry, oldest first */
	uint64_t next_cookie;		/* dir: readdir offset of the next entry */
	uint64_t nchildren;		/* dir */
	struct chan *chan;		/* channel, or NULL for a directory */
	/* The ring file of a channel (IPCD_RINGS_DIR/<ino>): a file of the
	 * mapping's size that maps the channel's rings, for clients whose
	 * mmap goes by the file size.  ring_of is the channel inode (which
	 * it holds a lookup on); a channel inode points back with ring_file. */
	struct inode *ring_of;
	struct inode *ring_file;
	int backing_id;			/* ring file: its passthrough id */
	bool pair_pending;		/* made by the factory, its ends not yet
					   open: found as IPCD_PAIRS_DIR/<ino> */
};

struct dentry {
	struct inode *parent;
	struct inode *inode;
	uint64_t cookie;		/* readdir offset, unique in parent */
	struct cds_lfht_node node;	/* in fs->dentries, by (parent, name) */
	struct cds_list_head sib;	/* in parent->children */
	struct rcu_head rcu;
	char name[];
};

/* One open file of a channel. */
struct handle {
	struct chan *ch;
	unsigned roles;			/* IPCD_ROLE_* */
	unsigned side;			/* duplex: writes ring `side`, reads the other */
	int end;			/* anonymous: the end it is (0, 1), or -1 */
	uint32_t eof_epoch;		/* this reader's end-of-file epoch */
	struct fuse_pollhandle *ph;	/* pending poll notification, or NULL */
	short poll_events;		/* events asked with ph */
	uint64_t snap[8];		/* both rings' state when ph was taken */
	struct cds_list_head link;	/* in ch->handles */
	/*
	 * A program that takes a channel for a regular file may read ahead
	 * and seek back over what it did not use.  pos is where the file
	 * offset stands after this handle's last read or write through the
	 * daemon; back holds the last bytes its reads took, while nobody else
	 * has read from the ring since (its head is still back_head): a read
	 * at an offset in [pos - back_len, pos) gets them again.
	 */
	uint64_t pos;
	unsigned char *back;		/* IPCD_BACK_MAX bytes, or NULL */
	size_t back_len;
	uint64_t back_head;
	uint32_t back_reuse;		/* ring 0's reuse when they were read */
};

/* The most bytes a seek back can take a reader back over. */
#define IPCD_BACK_MAX	65536u

/* A read or write request waiting for a ring. */
struct parked {
	fuse_req_t req;
	struct handle *h;
	uint64_t off;			/* read: the file offset it came at */
	size_t size;			/* read: bytes asked; write: bytes given */
	size_t done;			/* write: bytes already in the ring */
	struct cds_list_head link;	/* in rs->parked_rd or rs->parked_wr */
	unsigned char data[];		/* write: the bytes */
};

/* One ring of a channel (a duplex channel has two, one per direction). */
struct rstate {
	struct ipcd_view v;		/* daemon's trusted view */
	unsigned readers, writers;	/* open ends reading / writing this ring */
	uint32_t epoch;			/* bumped when writers goes 0 -> 1 */
	uint64_t gen_tail;		/* tail when this epoch began */
	bool gen_real;			/* a writer of it left other than by
					   narrowing to reading */
	struct cds_list_head parked_rd;	/* struct parked, oldest first */
	struct cds_list_head parked_wr;
	bool want_data, want_space;	/* we count in rd_/wr_sleepers */
	bool busy;			/* a parked request met a held lock */
	struct cds_list_head ancs;	/* attachments (anc.c), by offset */
	unsigned nanc;
};

struct chan {
	struct inode *inode;
	int memfd;			/* the rings' memory, -1 once freed */
	int backing_id;			/* passthrough id, 0 if none yet */
	void *map;			/* daemon's mapping of the memfd */
	size_t map_len;
	uint64_t cap;			/* capacity of each ring */
	uint32_t features;		/* IPCD_RING_F_* */
	unsigned nrings;		/* 1, or 2 for a duplex channel: sides */
	uint32_t coord;			/* IPCD_COORD_* */
	unsigned nq;			/* queues a side (coord queues), else 0 */
	/* The coordination's calls (coord.h) and its state of side i,
	 * st[i]: &rs[i].v for the lock; else an array of two (qs or sh),
	 * and rs[i].v is a copy of its first ring. */
	const struct ipcd_coord_ops *ops;
	void *st[2];
	struct ipcd_qset *qs;		/* queues: one set a side, else NULL */
	struct ipcd_shared *sh;		/* shared: one ring of cells a side,
					   else NULL */
	struct rstate rs[2];
	unsigned opens;
	uint32_t anon;			/* IPCD_ANON_*, or 0 for a named channel */
	pid_t cred_pid;			/* anonymous: who asked for it (GETCRED) */
	uid_t cred_uid;
	gid_t cred_gid;
	unsigned ends_seen;		/* anonymous: bit e once end e was opened */
	unsigned ends_open;		/* anonymous: bit e while it is open */
	bool broken;			/* corruption seen: EIO for everyone */
	char label[64];			/* user.ipcd.label */
	struct cds_list_head handles;	/* struct handle */
	struct cds_list_head watch;	/* in fs->watched while watched */
	struct cds_list_head all;	/* in fs->chans while it has a ring */
	bool watched;
	uint64_t core_ns;		/* CPU time the coordination core spent on it */
};

enum fastpath_mode { FASTPATH_AUTO, FASTPATH_REQUIRE, FASTPATH_OFF };

struct ipcd_fs {
	pthread_mutex_t mu;
	struct fuse_session *se;
	int fuse_fd;

	/* Options. */
	uint64_t ring_size;		/* default capacity of a new channel */
	uint64_t max_ring_size;
	uint64_t max_channels;
	uint64_t mem_limit;		/* sum of capacities */
	enum fastpath_mode fastpath_mode;
	uint32_t coord_default;		/* IPCD_COORD_* of a new channel */
	unsigned queues;		/* queues a side with coord=queues */

	/* Passthrough state (set before the session loop, then read only,
	 * except fastpath which falls to false once if the kernel refuses). */
	bool kernel_passthrough;	/* the kernel offered it at INIT */
	bool fastpath;			/* we answer opens with passthrough */
	char fastpath_why[160];		/* why not, when !fastpath */
	uint64_t init_unique;
	uint32_t max_write;

	/* Namespace, under mu. */
	struct inode *rings_dir;	/* IPCD_RINGS_DIR: ring files by number */
	struct inode *pairs_dir;	/* IPCD_PAIRS_DIR: the factory's channels */
	char mnt[4096];			/* the mount point, absolute */
	dev_t dev;			/* the mount's device number */
	struct cds_lfht *inodes;
	struct cds_lfht *dentries;
	fuse_ino_t next_ino;
	uint64_t nchannels;
	uint64_t mem_used;
	struct cds_list_head chans;	/* every channel with a ring */
	uint64_t created;		/* channels ever made */
	uint64_t freed_bytes;		/* bytes ever written to rings now freed */
	uint64_t freed_reused;		/* reuses counted by pairs now freed */
	uint64_t freed_served;		/* pipes served by pairs now freed */
	uint64_t freed_served_by[IPCD_COORD_MAX + 1];	/* of them, by coordination */
	uint64_t slow_bytes;		/* bytes the daemon read or wrote for clients */
	_Atomic uint64_t core_ns;	/* CPU time of the coordination core's thread */

	/* Coordination core. */
	struct cds_list_head watched;	/* struct chan, under mu */
	_Atomic uint32_t kick;		/* futex word: bumped to wake the core */
	bool stop;			/* under mu */
	bool sliced;			/* the wake-up barrier failed: sleep 10 ms at most */
	pthread_t coord;
	unsigned char *rbuf;		/* scratch for reads, under mu */
};

extern struct ipcd_fs *ipcd;

/* ns.c: namespace */
extern const struct fuse_lowlevel_ops ipcd_ops;
int ns_init(struct ipcd_fs *fs);
void ns_destroy(struct ipcd_fs *fs);
void ns_fill_attr(const struct inode *in, struct stat *st);
void ns_maybe_free(struct inode *in);
struct inode *ns_inode(fuse_ino_t ino);
struct inode *ns_new_anon(uint32_t anon);
void ns_drop_anon(struct inode *in);

/* factory.c: pairs of anonymous channel ends made ahead of time */
int factory_start(struct ipcd_fs *fs);
void factory_stop(struct ipcd_fs *fs);
bool factory_lookup_ok(pid_t tid);

/* Largest read answered at once; the kernel asks for at most 1 MiB. */
#define IPCD_RBUF_SIZE	(2u << 20)

/* chan.c: channel objects and the slow path */
int chan_create(struct inode *in, uint64_t capacity, uint32_t features);
bool chan_busy(const struct chan *ch);
int chan_reformat(struct chan *ch, uint64_t capacity, uint32_t features);
/* Change how the channel's ends are coordinated (IPCD_COORD_*); only while
 * nobody has it open, and not for an anonymous one. */
int chan_set_coord(struct chan *ch, uint32_t coord);
const char *chan_coord(const struct chan *ch);
/* Free the queues and reader slots of dead threads (queues). */
void chan_reap(struct chan *ch);
int chan_set_anon(struct chan *ch, uint32_t anon);
uint32_t chan_pipes_coord(uint32_t anon);
uint32_t chan_anon_features(uint32_t anon);
void chan_free_ring(struct chan *ch);
void chan_destroy(struct chan *ch);
int chan_info(struct chan *ch, char *buf, size_t len);
uint64_t chan_bytes(const struct chan *ch);
uint64_t chan_reused(const struct chan *ch);
uint64_t chan_served(const struct chan *ch);
int chan_recycle(fuse_ino_t ino, uid_t uid, gid_t gid, uint32_t *anon, uint64_t *map_len);
void chan_set_cred(fuse_ino_t ino, pid_t pid);
const char *chan_kind(const struct chan *ch);
void chan_progress(struct chan *ch);
void chan_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
int chan_open_ring(struct inode *rf, struct fuse_file_info *fi, struct handle **hp);
void chan_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void chan_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	       struct fuse_file_info *fi);
void chan_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
		off_t off, struct fuse_file_info *fi);
void chan_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
	       struct fuse_pollhandle *ph);
void chan_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
		struct fuse_file_info *fi, unsigned flags, const void *in_buf,
		size_t in_bufsz, size_t out_bufsz);
void chan_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		struct fuse_file_info *fi);

/* coord.c: the coordination core */
int coord_start(struct ipcd_fs *fs);
void coord_stop(struct ipcd_fs *fs);
void coord_watch(struct chan *ch);
void coord_unwatch(struct chan *ch);
void coord_kick(struct ipcd_fs *fs);

/* anc.c: descriptors passed on socket pairs (ring.h, "Attachments") */
int anc_bind(struct rstate *rs, const struct ipcd_anc_bind *b, pid_t tid);
int anc_take(struct rstate *rs, struct ipcd_anc_take *t, pid_t tid);
void anc_sync(struct rstate *rs);
void anc_clear(struct rstate *rs);
int anc_start(struct ipcd_fs *fs);
void anc_stop(struct ipcd_fs *fs);
void anc_end(void);

/* passthrough.c */
int pt_setup_io(struct ipcd_fs *fs);
int pt_backing_open(struct ipcd_fs *fs, int fd);
void pt_backing_close(struct ipcd_fs *fs, int id);
int pt_reply_open(fuse_req_t req, uint64_t fh, int backing_id);
const char *pt_probe(char *why, size_t len);

/* main.c: a size with an optional k, M or G suffix; -EINVAL if bad or too big. */
int ipcd_parse_size(const char *s, uint64_t *out);

/* Log once-per-event messages: stderr in the foreground, syslog otherwise. */
void ipcd_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif /* IPCD_FS_H */
