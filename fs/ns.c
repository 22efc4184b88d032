/*
 * ns.c - the ipcd namespace: directories and channel files, their
 * attributes and extended attributes, and the FUSE operations table.  Inodes
 * and directory entries live in two RCU hash tables (by inode number, and by
 * parent and name); all changes happen under fs->mu.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <syslog.h>
#include <unistd.h>

#include "fs.h"

#define XA_KIND		IPCD_XATTR_KIND
#define XA_CAPACITY	IPCD_XATTR_CAPACITY
#define XA_COORD	IPCD_XATTR_COORD
#define XA_INFO		IPCD_XATTR_INFO
#define XA_STATUS	IPCD_XATTR_STATUS
#define XA_LABEL	IPCD_XATTR_LABEL
#define XA_ANON		IPCD_XATTR_ANON

static const char *const anon_names[] = IPCD_ANON_NAMES;

static const double entry_timeout = 1.0, attr_timeout = 1.0;

/* ---- hashing ------------------------------------------------------------ */

static unsigned long hash_bytes(unsigned long h, const void *p, size_t n)
{
	const unsigned char *c = p;

	/* FNV-1a */
	while (n--)
		h = (h ^ *c++) * 0x100000001b3ul;
	return h;
}

static unsigned long ino_hash(fuse_ino_t ino)
{
	return hash_bytes(0xcbf29ce484222325ul, &ino, sizeof(ino));
}

static unsigned long dentry_hash(fuse_ino_t parent, const char *name)
{
	return hash_bytes(ino_hash(parent), name, strlen(name));
}

static int ino_match(struct cds_lfht_node *n, const void *key)
{
	return caa_container_of(n, struct inode, node)->ino == *(const fuse_ino_t *)key;
}

struct dkey {
	fuse_ino_t parent;
	const char *name;
};

static int dentry_match(struct cds_lfht_node *n, const void *key)
{
	const struct dentry *d = caa_container_of(n, struct dentry, node);
	const struct dkey *k = key;

	return d->parent->ino == k->parent && strcmp(d->name, k->name) == 0;
}

struct inode *ns_inode(fuse_ino_t ino)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *n;

	rcu_read_lock();
	cds_lfht_lookup(ipcd->inodes, ino_hash(ino), ino_match, &ino, &it);
	n = cds_lfht_iter_get_node(&it);
	rcu_read_unlock();
	return n ? caa_container_of(n, struct inode, node) : NULL;
}

static struct dentry *dentry_find(struct inode *parent, const char *name)
{
	struct dkey k = { parent->ino, name };
	struct cds_lfht_iter it;
	struct cds_lfht_node *n;

	rcu_read_lock();
	cds_lfht_lookup(ipcd->dentries, dentry_hash(parent->ino, name),
			dentry_match, &k, &it);
	n = cds_lfht_iter_get_node(&it);
	rcu_read_unlock();
	return n ? caa_container_of(n, struct dentry, node) : NULL;
}

/* ---- inodes ------------------------------------------------------------- */

static void free_inode_rcu(struct rcu_head *h)
{
	struct inode *in = caa_container_of(h, struct inode, rcu);

	free(in->chan);
	free(in);
}

static void free_dentry_rcu(struct rcu_head *h);
static struct inode *inode_new(mode_t mode, const struct fuse_ctx *ctx,
			       struct inode *parent);

static void free_dentry_rcu(struct rcu_head *h)
{
	free(caa_container_of(h, struct dentry, rcu));
}

void ns_fill_attr(const struct inode *in, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = in->ino;
	st->st_mode = in->mode;
	st->st_nlink = in->nlink;
	st->st_uid = in->uid;
	st->st_gid = in->gid;
	st->st_blksize = 4096;
	st->st_atim = in->atime;
	st->st_mtim = in->mtime;
	st->st_ctim = in->ctime;
	if (in->ring_of) {
		/* A ring file shows its channel's owner and mode, and the size
		 * of the mapping. */
		const struct inode *c = in->ring_of;

		st->st_mode = S_IFREG | (c->mode & 07777);
		st->st_uid = c->uid;
		st->st_gid = c->gid;
		st->st_nlink = 1;
		if (c->chan && c->chan->memfd >= 0)
			st->st_size = (off_t)c->chan->map_len;
		st->st_blocks = st->st_size / 512;
		st->st_atim = c->atime;
		st->st_mtim = c->mtime;
		st->st_ctim = c->ctime;
	} else if (!in->chan) {
		st->st_size = 4096;
		st->st_blocks = 8;
	} else if (in->chan->memfd >= 0) {
		/* A channel reports no size: it is a stream, and a program that
		 * goes by a regular file's size (copy_file_range, wc -c, tail,
		 * cp) must read it to its end instead.  Its blocks are the
		 * memory its rings take: the length to map (ipcd-ring(7)). */
		st->st_blocks = (blkcnt_t)(in->chan->map_len / 512);
	}
}

/* Forget a ring file nobody remembers: it lets go of its channel. */
static void ring_file_free(struct inode *rf)
{
	struct inode *c = rf->ring_of;

	if (rf->backing_id)
		pt_backing_close(ipcd, rf->backing_id);
	c->ring_file = NULL;
	c->nlookup--;
	cds_lfht_del(ipcd->inodes, &rf->node);
	call_rcu(&rf->rcu, free_inode_rcu);
	ns_maybe_free(c);
}

/* Free an inode nobody names, opens or remembers (under mu). */
void ns_maybe_free(struct inode *in)
{
	if (in->ring_of) {
		if (!in->nlookup)
			ring_file_free(in);
		return;
	}
	if (in->nlink || in->nlookup || (in->chan && in->chan->opens) ||
	    in->ino == FUSE_ROOT_ID || in == ipcd->rings_dir ||
	    in == ipcd->pairs_dir || in->pair_pending)
		return;
	if (in->chan)
		chan_free_ring(in->chan);
	cds_lfht_del(ipcd->inodes, &in->node);
	call_rcu(&in->rcu, free_inode_rcu);
}

static struct inode *inode_new(mode_t mode, const struct fuse_ctx *ctx,
			       struct inode *parent)
{
	struct inode *in = calloc(1, sizeof(*in));
	struct timespec now;

	if (!in)
		return NULL;
	clock_gettime(CLOCK_REALTIME, &now);
	in->ino = ipcd->next_ino++;
	in->mode = mode;
	in->uid = ctx ? ctx->uid : 0;
	in->gid = ctx ? ctx->gid : 0;
	if (parent && (parent->mode & S_ISGID)) {
		in->gid = parent->gid;
		if (S_ISDIR(mode))
			in->mode |= S_ISGID;
	}
	in->atime = in->mtime = in->ctime = now;
	in->next_cookie = 3;	/* 1 and 2 are "." and ".." */
	CDS_INIT_LIST_HEAD(&in->children);
	cds_lfht_node_init(&in->node);
	return in;
}

static void touch(struct inode *in, bool data)
{
	clock_gettime(CLOCK_REALTIME, &in->ctime);
	if (data)
		in->mtime = in->ctime;
}

static int link_name(struct inode *parent, const char *name, struct inode *in)
{
	size_t len = strlen(name);
	struct dentry *d;

	if (len > NAME_MAX)
		return -ENAMETOOLONG;
	d = calloc(1, sizeof(*d) + len + 1);
	if (!d)
		return -ENOMEM;
	memcpy(d->name, name, len + 1);
	d->parent = parent;
	d->inode = in;
	d->cookie = parent->next_cookie++;
	cds_lfht_node_init(&d->node);
	cds_lfht_add(ipcd->dentries, dentry_hash(parent->ino, name), &d->node);
	cds_list_add_tail(&d->sib, &parent->children);
	parent->nchildren++;
	in->nlink++;
	if (S_ISDIR(in->mode))
		parent->nlink++;
	touch(parent, true);
	return 0;
}

static void unlink_dentry(struct dentry *d)
{
	struct inode *parent = d->parent, *in = d->inode;

	cds_lfht_del(ipcd->dentries, &d->node);
	cds_list_del(&d->sib);
	parent->nchildren--;
	if (S_ISDIR(in->mode)) {
		parent->nlink--;
		in->nlink = 0;
	} else {
		in->nlink--;
	}
	touch(parent, true);
	touch(in, false);
	call_rcu(&d->rcu, free_dentry_rcu);
	if (in->nlink == 0) {
		if (in->chan && in->chan->opens == 0)
			chan_free_ring(in->chan);
		ns_maybe_free(in);
	}
}

/* Give the inode of d the name newname in dir `to`, dropping d. */
static int move_dentry(struct dentry *d, struct inode *to, const char *newname)
{
	struct inode *from = d->parent, *in = d->inode;
	size_t len = strlen(newname);
	struct dentry *n = calloc(1, sizeof(*n) + len + 1);

	if (!n)
		return -ENOMEM;
	memcpy(n->name, newname, len + 1);
	n->parent = to;
	n->inode = in;
	n->cookie = to->next_cookie++;
	cds_lfht_node_init(&n->node);
	cds_lfht_del(ipcd->dentries, &d->node);
	cds_list_del(&d->sib);
	from->nchildren--;
	cds_lfht_add(ipcd->dentries, dentry_hash(to->ino, newname), &n->node);
	cds_list_add_tail(&n->sib, &to->children);
	to->nchildren++;
	if (S_ISDIR(in->mode)) {
		from->nlink--;
		to->nlink++;
	}
	touch(from, true);
	touch(to, true);
	touch(in, false);
	call_rcu(&d->rcu, free_dentry_rcu);
	return 0;
}

/* ---- replies ------------------------------------------------------------ */

/* A ring file's size is its channel's mapping, which a change of kind,
 * capacity or coordination remakes: the kernel keeps none of it. */
static double attr_timeout_of(const struct inode *in)
{
	return in->ring_of ? 0.0 : attr_timeout;
}

static void reply_entry(fuse_req_t req, struct inode *in)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.ino = in->ino;
	e.generation = 1;
	e.attr_timeout = attr_timeout_of(in);
	e.entry_timeout = entry_timeout;
	ns_fill_attr(in, &e.attr);
	in->nlookup++;
	fuse_reply_entry(req, &e);
}

static struct inode *dir_of(fuse_ino_t ino, int *err)
{
	struct inode *in = ns_inode(ino);

	*err = !in ? ENOENT : !S_ISDIR(in->mode) ? ENOTDIR : 0;
	return *err ? NULL : in;
}

/* ---- operations --------------------------------------------------------- */

static void ns_init_op(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* Writes go through as one request each, at most max_write bytes. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	conn->want &= ~FUSE_CAP_ASYNC_READ;
	/* O_TRUNC comes as a SETATTR, whose reply keeps the real size. */
	conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->capable & FUSE_CAP_IOCTL_DIR)
		conn->want &= ~FUSE_CAP_IOCTL_DIR;
	conn->time_gran = 1;
	/*
	 * The kernel sends a file's release in the background, and holds back
	 * background requests beyond max_background.  With the limit out of
	 * reach, a release is queued before close() returns, so a request made
	 * after close() (the shim's check after a last close) is answered after
	 * the release was handled.
	 */
	conn->max_background = UINT16_MAX;
	conn->congestion_threshold = UINT16_MAX;
}

/* The ring file of the channel whose inode number is name, made on first
 * look-up (under mu); NULL if there is no such channel. */
static struct inode *ring_file(const char *name)
{
	struct inode *c, *rf;
	unsigned long long ino;
	char *end;

	errno = 0;
	ino = strtoull(name, &end, 10);
	if (errno || *end || end == name || name[0] == '0')
		return NULL;
	c = ns_inode((fuse_ino_t)ino);
	if (!c || !c->chan || c->chan->memfd < 0)
		return NULL;
	if (c->ring_file)
		return c->ring_file;
	rf = inode_new(S_IFREG, NULL, NULL);
	if (!rf)
		return NULL;
	rf->ring_of = c;
	rf->nlink = 1;
	c->ring_file = rf;
	c->nlookup++;	/* the channel stays while its ring file is known */
	cds_lfht_add(ipcd->inodes, ino_hash(rf->ino), &rf->node);
	return rf;
}

/* A channel the factory made and is opening, by number, for the factory
 * alone (under mu). */
static struct inode *pending_pair(const char *name, pid_t tid)
{
	unsigned long long ino;
	struct inode *in;
	char *end;

	errno = 0;
	ino = strtoull(name, &end, 10);
	if (errno || *end || end == name || !factory_lookup_ok(tid))
		return NULL;
	in = ns_inode((fuse_ino_t)ino);
	return in && in->pair_pending ? in : NULL;
}

/* A new anonymous channel of kind anon, with no name, for the factory to
 * open (under mu); NULL with errno set if it cannot be made. */
struct inode *ns_new_anon(uint32_t anon)
{
	struct inode *in = inode_new(S_IFREG | 0600, NULL, NULL);
	int r;

	if (!in) {
		errno = ENOMEM;
		return NULL;
	}
	in->uid = getuid();
	in->gid = getgid();
	r = chan_create(in, ipcd->ring_size, 0);
	if (!r) {
		r = chan_set_anon(in->chan, anon);
		if (r) {
			chan_free_ring(in->chan);
			free(in->chan);
			in->chan = NULL;
		}
	}
	if (r) {
		free(in);
		errno = -r;
		return NULL;
	}
	in->pair_pending = true;
	cds_lfht_add(ipcd->inodes, ino_hash(in->ino), &in->node);
	return in;
}

/* The factory is done opening in (or gave up): it lives as its ends do. */
void ns_drop_anon(struct inode *in)
{
	in->pair_pending = false;
	if (in->chan && in->chan->opens == 0 && in->chan->memfd >= 0)
		chan_free_ring(in->chan);
	ns_maybe_free(in);
}

static void ns_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct inode *dir, *in = NULL;
	struct dentry *d;
	int err;

	if (strlen(name) > NAME_MAX) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	pthread_mutex_lock(&ipcd->mu);
	dir = dir_of(parent, &err);
	if (dir == ipcd->rings_dir) {
		in = ring_file(name);
	} else if (dir == ipcd->pairs_dir) {
		in = pending_pair(name, fuse_req_ctx(req)->pid);
	} else if (dir && dir->ino == FUSE_ROOT_ID && !strcmp(name, IPCD_RINGS_DIR)) {
		in = ipcd->rings_dir;
	} else if (dir && dir->ino == FUSE_ROOT_ID && !strcmp(name, IPCD_PAIRS_DIR)) {
		in = ipcd->pairs_dir;
	} else if (dir) {
		d = dentry_find(dir, name);
		in = d ? d->inode : NULL;
	}
	if (in)
		reply_entry(req, in);
	pthread_mutex_unlock(&ipcd->mu);
	if (!in)
		fuse_reply_err(req, dir ? ENOENT : err);
}

/* Whether name in dir is taken by the namespace itself (ring files, the
 * factory's channels). */
static int reserved_name(const struct inode *dir, const char *name)
{
	if (dir == ipcd->rings_dir || dir == ipcd->pairs_dir)
		return EPERM;
	if (dir->ino == FUSE_ROOT_ID &&
	    (!strcmp(name, IPCD_RINGS_DIR) || !strcmp(name, IPCD_PAIRS_DIR)))
		return EEXIST;
	return 0;
}

static void forget_one(fuse_ino_t ino, uint64_t n)
{
	struct inode *in = ns_inode(ino);

	if (!in)
		return;
	in->nlookup = n > in->nlookup ? 0 : in->nlookup - n;
	ns_maybe_free(in);
}

static void ns_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	pthread_mutex_lock(&ipcd->mu);
	forget_one(ino, nlookup);
	pthread_mutex_unlock(&ipcd->mu);
	fuse_reply_none(req);
}

static void ns_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	size_t i;

	pthread_mutex_lock(&ipcd->mu);
	for (i = 0; i < count; i++)
		forget_one(forgets[i].ino, forgets[i].nlookup);
	pthread_mutex_unlock(&ipcd->mu);
	fuse_reply_none(req);
}

static void ns_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct inode *in;
	struct stat st;
	double t = attr_timeout;

	(void)fi;
	pthread_mutex_lock(&ipcd->mu);
	in = ns_inode(ino);
	if (in) {
		ns_fill_attr(in, &st);
		t = attr_timeout_of(in);
	}
	pthread_mutex_unlock(&ipcd->mu);
	if (in)
		fuse_reply_attr(req, &st, t);
	else
		fuse_reply_err(req, ENOENT);
}

static void set_time(struct timespec *t, const struct timespec *v, bool now)
{
	if (now)
		clock_gettime(CLOCK_REALTIME, t);
	else
		*t = *v;
}

static void ns_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct inode *in;
	struct stat st;
	int err = 0;

	(void)fi;
	pthread_mutex_lock(&ipcd->mu);
	in = ns_inode(ino);
	if (!in) {
		err = ENOENT;
		goto out;
	}
	if (in->ring_of || in == ipcd->rings_dir || in == ipcd->pairs_dir) {
		err = EPERM;	/* a ring file follows its channel */
		goto out;
	}
	if ((to_set & FUSE_SET_ATTR_SIZE) && !in->chan) {
		err = EISDIR;
		goto out;
	}
	/* A size change on a channel is ignored, as for a FIFO (O_TRUNC). */
	if (to_set & FUSE_SET_ATTR_MODE)
		in->mode = (in->mode & S_IFMT) | (attr->st_mode & 07777);
	if (to_set & FUSE_SET_ATTR_UID)
		in->uid = attr->st_uid;
	if (to_set & FUSE_SET_ATTR_GID)
		in->gid = attr->st_gid;
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW))
		set_time(&in->atime, &attr->st_atim, to_set & FUSE_SET_ATTR_ATIME_NOW);
	if (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW))
		set_time(&in->mtime, &attr->st_mtim, to_set & FUSE_SET_ATTR_MTIME_NOW);
	if (to_set & FUSE_SET_ATTR_CTIME)
		in->ctime = attr->st_ctim;
	else
		touch(in, false);
	ns_fill_attr(in, &st);
out:
	pthread_mutex_unlock(&ipcd->mu);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_attr(req, &st, attr_timeout);
}

static void make_node(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct inode *dir, *in;
	int err;

	if (strlen(name) > NAME_MAX) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	pthread_mutex_lock(&ipcd->mu);
	dir = dir_of(parent, &err);
	if (!dir)
		goto out;
	err = reserved_name(dir, name);
	if (err)
		goto out;
	if (dentry_find(dir, name)) {
		err = EEXIST;
		goto out;
	}
	in = inode_new(mode, ctx, dir);
	if (!in) {
		err = ENOMEM;
		goto out;
	}
	if (S_ISREG(mode)) {
		err = -chan_create(in, ipcd->ring_size, 0);
		if (err) {
			free(in);
			goto out;
		}
	} else {
		in->nlink = 1;	/* "." */
	}
	cds_lfht_add(ipcd->inodes, ino_hash(in->ino), &in->node);
	err = -link_name(dir, name, in);
	if (err) {
		in->nlink = 0;
		ns_maybe_free(in);
		goto out;
	}
	reply_entry(req, in);
out:
	pthread_mutex_unlock(&ipcd->mu);
	if (err)
		fuse_reply_err(req, err);
}

static void ns_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	(void)rdev;
	/* Only regular files: a channel must be one to the kernel so that it
	 * sends the channel's I/O here (a FIFO node would be a kernel pipe). */
	if (!S_ISREG(mode)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	make_node(req, parent, name, S_IFREG | (mode & 07777));
}

static void ns_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	make_node(req, parent, name, S_IFDIR | (mode & 07777));
}

static void remove_name(fuse_req_t req, fuse_ino_t parent, const char *name,
			bool dir_wanted)
{
	struct inode *dir;
	struct dentry *d;
	int err;

	pthread_mutex_lock(&ipcd->mu);
	dir = dir_of(parent, &err);
	if (!dir)
		goto out;
	d = dentry_find(dir, name);
	if (!d)
		err = reserved_name(dir, name) ? EPERM : ENOENT;
	else if (dir_wanted && !S_ISDIR(d->inode->mode))
		err = ENOTDIR;
	else if (!dir_wanted && S_ISDIR(d->inode->mode))
		err = EISDIR;
	else if (dir_wanted && d->inode->nchildren)
		err = ENOTEMPTY;
	else
		unlink_dentry(d);
out:
	pthread_mutex_unlock(&ipcd->mu);
	fuse_reply_err(req, err);
}

static void ns_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, parent, name, false);
}

static void ns_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, parent, name, true);
}

static void ns_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	struct inode *from, *to, *moving;
	struct dentry *d, *t;
	int err;

	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (strlen(newname) > NAME_MAX) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	pthread_mutex_lock(&ipcd->mu);
	from = dir_of(parent, &err);
	to = from ? dir_of(newparent, &err) : NULL;
	if (!to)
		goto out;
	if (reserved_name(from, name) || reserved_name(to, newname)) {
		err = from == ipcd->rings_dir || to == ipcd->rings_dir ? EPERM : EEXIST;
		goto out;
	}
	d = dentry_find(from, name);
	t = dentry_find(to, newname);
	if (!d) {
		err = ENOENT;
		goto out;
	}
	if (d == t)
		goto out;
	if (flags & RENAME_EXCHANGE) {
		if (!t) {
			err = ENOENT;
			goto out;
		}
		/* Swap what the two names point at. */
		moving = d->inode;
		d->inode = t->inode;
		t->inode = moving;
		if (S_ISDIR(d->inode->mode) != S_ISDIR(t->inode->mode) && from != to) {
			if (S_ISDIR(t->inode->mode)) {
				to->nlink++;
				from->nlink--;
			} else {
				from->nlink++;
				to->nlink--;
			}
		}
		touch(from, true);
		touch(to, true);
		goto out;
	}
	if (t && (flags & RENAME_NOREPLACE)) {
		err = EEXIST;
		goto out;
	}
	moving = d->inode;
	if (t) {
		if (S_ISDIR(moving->mode) && !S_ISDIR(t->inode->mode)) {
			err = ENOTDIR;
			goto out;
		}
		if (!S_ISDIR(moving->mode) && S_ISDIR(t->inode->mode)) {
			err = EISDIR;
			goto out;
		}
		if (S_ISDIR(t->inode->mode) && t->inode->nchildren) {
			err = ENOTEMPTY;
			goto out;
		}
	}
	if (t)
		unlink_dentry(t);
	err = -move_dentry(d, to, newname);
out:
	pthread_mutex_unlock(&ipcd->mu);
	fuse_reply_err(req, err);
}

static void ns_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct inode *dir;
	struct dentry *d;
	struct stat st;
	char *buf;
	size_t used = 0, n;
	int err;

	(void)fi;
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&ipcd->mu);
	dir = dir_of(ino, &err);
	if (!dir)
		goto out;
	memset(&st, 0, sizeof(st));
	st.st_mode = S_IFDIR;
	if (off < 1) {
		st.st_ino = dir->ino;
		n = fuse_add_direntry(req, buf + used, size - used, ".", &st, 1);
		if (n > size - used)
			goto full;
		used += n;
	}
	if (off < 2) {
		st.st_ino = FUSE_ROOT_ID;
		n = fuse_add_direntry(req, buf + used, size - used, "..", &st, 2);
		if (n > size - used)
			goto full;
		used += n;
	}
	cds_list_for_each_entry(d, &dir->children, sib) {
		if ((off_t)d->cookie <= off)
			continue;
		st.st_ino = d->inode->ino;
		st.st_mode = d->inode->mode;
		n = fuse_add_direntry(req, buf + used, size - used, d->name, &st,
				      (off_t)d->cookie);
		if (n > size - used)
			break;
		used += n;
	}
full:
	clock_gettime(CLOCK_REALTIME, &dir->atime);
out:
	pthread_mutex_unlock(&ipcd->mu);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_buf(req, buf, used);
	free(buf);
}

static void ns_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs s;

	(void)ino;
	memset(&s, 0, sizeof(s));
	pthread_mutex_lock(&ipcd->mu);
	s.f_bsize = 4096;
	s.f_frsize = 4096;
	s.f_blocks = ipcd->mem_limit / 4096;
	s.f_bfree = s.f_bavail = (ipcd->mem_limit - ipcd->mem_used) / 4096;
	s.f_files = ipcd->max_channels;
	s.f_ffree = s.f_favail = ipcd->max_channels - ipcd->nchannels;
	s.f_namemax = NAME_MAX;
	pthread_mutex_unlock(&ipcd->mu);
	fuse_reply_statfs(req, &s);
}

static void ns_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

/* ---- extended attributes ------------------------------------------------- */

static int parse_size(const char *v, size_t n, uint64_t *out)
{
	char tmp[32];

	if (n == 0 || n >= sizeof(tmp))
		return -EINVAL;
	memcpy(tmp, v, n);
	tmp[n] = 0;
	if (tmp[n - 1] == '\n')
		tmp[n - 1] = 0;
	return ipcd_parse_size(tmp, out);
}

static int parse_kind(const char *v, size_t n, uint32_t *features)
{
	static const char *const kinds[] = IPCD_KIND_NAMES;
	uint32_t f;

	if (n && v[n - 1] == '\n')
		n--;
	for (f = 0; f < sizeof(kinds) / sizeof(kinds[0]); f++)
		if (strlen(kinds[f]) == n && !memcmp(v, kinds[f], n)) {
			*features = f;	/* the index is the features */
			return 0;
		}
	return EINVAL;
}

static void ns_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	struct inode *in;
	struct chan *ch;
	uint64_t cap;
	uint32_t features;
	int err = 0;

	(void)flags;
	pthread_mutex_lock(&ipcd->mu);
	in = ns_inode(ino);
	if (!in) {
		err = ENOENT;
		goto out;
	}
	ch = in->chan;
	if (strcmp(name, XA_KIND) && strcmp(name, XA_CAPACITY) &&
	    strcmp(name, XA_LABEL) && strcmp(name, XA_ANON) && strcmp(name, XA_COORD)) {
		err = strncmp(name, IPCD_XATTR_PREFIX, sizeof(IPCD_XATTR_PREFIX) - 1) ? ENOTSUP : EPERM;
		goto out;
	}
	if (!ch) {
		err = EISDIR;
		goto out;
	}
	if (!strcmp(name, XA_ANON)) {
		err = EINVAL;
		for (uint32_t k = 1; k <= IPCD_ANON_MAX; k++)
			if (strlen(anon_names[k]) == size && !memcmp(value, anon_names[k], size))
				err = -chan_set_anon(ch, k);
		if (!err) {
			ch->cred_pid = fuse_req_ctx(req)->pid;
			ch->cred_uid = fuse_req_ctx(req)->uid;
			ch->cred_gid = fuse_req_ctx(req)->gid;
		}
		goto out;
	}
	if (!strcmp(name, XA_COORD)) {
		static const char *const coords[] = IPCD_COORD_NAMES;

		err = EINVAL;
		for (uint32_t k = 0; k <= IPCD_COORD_MAX; k++)
			if (strlen(coords[k]) == size && !memcmp(value, coords[k], size))
				err = -chan_set_coord(ch, k);
		if (!err)
			touch(in, false);
		goto out;
	}
	if (!strcmp(name, XA_LABEL)) {
		if (size >= sizeof(ch->label)) {
			err = ERANGE;
		} else {
			memcpy(ch->label, value, size);
			ch->label[size] = 0;
		}
		goto out;
	}
	features = ch->features;
	cap = ch->cap;
	if (!strcmp(name, XA_KIND)) {
		err = parse_kind(value, size, &features);
	} else {
		err = -parse_size(value, size, &cap);
		if (!err && !ipcd_ring_map_size(cap))
			err = EINVAL;
	}
	if (!err && (features != ch->features || cap != ch->cap))
		err = -chan_reformat(ch, cap, features);
	if (!err)
		touch(in, false);
out:
	pthread_mutex_unlock(&ipcd->mu);
	fuse_reply_err(req, err);
}

static void reply_value(fuse_req_t req, const char *v, size_t len, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, v, len);
}

/* The mount's state: fast path, channels, memory, bytes ever written into
 * rings (record headers and pads included), and payload bytes the daemon
 * itself wrote or read for clients (slow_bytes), pairs readied for another
 * pipe (reused) and pipes that pairs served (served): when slow_bytes stays
 * put while bytes grows, the traffic went through the rings alone.  pipes:
 * the coordination a pipe's pair gets (chan_pipes_coord), and
 * served_<coordination>: the pipes and socket pairs pairs of each served. */
static int status_line(char *v, size_t len)
{
	static const char *const coords[] = IPCD_COORD_NAMES;
	uint64_t bytes = ipcd->freed_bytes, reused = ipcd->freed_reused;
	uint64_t served = ipcd->freed_served, by[IPCD_COORD_MAX + 1];
	struct chan *ch;
	int n;
	unsigned k;

	memcpy(by, ipcd->freed_served_by, sizeof(by));
	cds_list_for_each_entry(ch, &ipcd->chans, all) {
		bytes += chan_bytes(ch);
		reused += chan_reused(ch);
		served += chan_served(ch);
		by[ch->coord] += chan_served(ch);
	}
	n = snprintf(v, len,
		     "fastpath=%s%s%s channels=%llu memory=%llu/%llu created=%llu "
		     "reused=%llu served=%llu bytes=%llu slow_bytes=%llu core_us=%llu pipes=%s",
		     ipcd->fastpath ? "on" : "off",
		     ipcd->fastpath ? "" : " reason=",
		     ipcd->fastpath ? "" : ipcd->fastpath_why,
		     (unsigned long long)ipcd->nchannels,
		     (unsigned long long)ipcd->mem_used,
		     (unsigned long long)ipcd->mem_limit,
		     (unsigned long long)ipcd->created,
		     (unsigned long long)reused,
		     (unsigned long long)served,
		     (unsigned long long)bytes,
		     (unsigned long long)ipcd->slow_bytes,
		     (unsigned long long)(atomic_load(&ipcd->core_ns) / 1000),
		     coords[chan_pipes_coord(IPCD_ANON_PIPE)]);
	for (k = 0; k <= IPCD_COORD_MAX && n > 0 && (size_t)n < len; k++)
		n += snprintf(v + n, len - (size_t)n, " served_%s=%llu", coords[k],
			      (unsigned long long)by[k]);
	if (n > 0 && (size_t)n < len)
		n += snprintf(v + n, len - (size_t)n, "\n");
	return n;
}

static void ns_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	struct inode *in;
	char v[1024];
	int len = -1, err = 0;

	pthread_mutex_lock(&ipcd->mu);
	in = ns_inode(ino);
	if (!in)
		err = ENOENT;
	else if (ino == FUSE_ROOT_ID && !strcmp(name, XA_STATUS))
		len = status_line(v, sizeof(v));
	else if (!in->chan)
		err = ENODATA;
	else if (!strcmp(name, XA_KIND))
		len = snprintf(v, sizeof(v), "%s", chan_kind(in->chan));
	else if (!strcmp(name, XA_CAPACITY))
		len = snprintf(v, sizeof(v), "%llu",
			       (unsigned long long)in->chan->cap);
	else if (!strcmp(name, XA_COORD))
		len = snprintf(v, sizeof(v), "%s", chan_coord(in->chan));
	else if (!strcmp(name, XA_LABEL) && in->chan->label[0])
		len = snprintf(v, sizeof(v), "%s", in->chan->label);
	else if (!strcmp(name, XA_ANON) && in->chan->anon)
		len = snprintf(v, sizeof(v), "%s", anon_names[in->chan->anon]);
	else if (!strcmp(name, XA_INFO))
		len = chan_info(in->chan, v, sizeof(v));
	else
		err = ENODATA;
	pthread_mutex_unlock(&ipcd->mu);
	if (err)
		fuse_reply_err(req, err);
	else
		reply_value(req, v, (size_t)len, size);
}

static void ns_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	static const char chan_names[] = XA_KIND "\0" XA_CAPACITY "\0" XA_COORD "\0" XA_INFO
					 "\0" XA_LABEL;	/* the label last */
	static const char root_names[] = XA_STATUS;
	struct inode *in;
	const char *v = "";
	size_t len = 0;

	pthread_mutex_lock(&ipcd->mu);
	in = ns_inode(ino);
	if (in && in->chan) {
		v = chan_names;
		len = sizeof(chan_names);
		if (!in->chan->label[0])
			len -= sizeof(XA_LABEL);
	} else if (in && ino == FUSE_ROOT_ID) {
		v = root_names;
		len = sizeof(root_names);
	}
	pthread_mutex_unlock(&ipcd->mu);
	if (!in)
		fuse_reply_err(req, ENOENT);
	else
		reply_value(req, v, len, size);
}

static void ns_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)ino;
	fuse_reply_err(req, strncmp(name, IPCD_XATTR_PREFIX, sizeof(IPCD_XATTR_PREFIX) - 1) ? ENODATA : EPERM);
}

const struct fuse_lowlevel_ops ipcd_ops = {
	.init = ns_init_op,
	.lookup = ns_lookup,
	.forget = ns_forget,
	.forget_multi = ns_forget_multi,
	.getattr = ns_getattr,
	.setattr = ns_setattr,
	.mknod = ns_mknod,
	.mkdir = ns_mkdir,
	.unlink = ns_unlink,
	.rmdir = ns_rmdir,
	.rename = ns_rename,
	.open = chan_open,
	.read = chan_read,
	.write = chan_write,
	.flush = ns_flush,
	.release = chan_release,
	.fsync = chan_fsync,
	.readdir = ns_readdir,
	.statfs = ns_statfs,
	.setxattr = ns_setxattr,
	.getxattr = ns_getxattr,
	.listxattr = ns_listxattr,
	.removexattr = ns_removexattr,
	.ioctl = chan_ioctl,
	.poll = chan_poll,
};

/* Free the whole namespace at exit, when no other thread runs. */
void ns_destroy(struct ipcd_fs *fs)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *n;
	struct inode *in;

	if (fs->dentries) {
		cds_lfht_first(fs->dentries, &it);
		while ((n = cds_lfht_iter_get_node(&it))) {
			cds_lfht_next(fs->dentries, &it);
			cds_lfht_del(fs->dentries, n);
			free(caa_container_of(n, struct dentry, node));
		}
		cds_lfht_destroy(fs->dentries, NULL);
		fs->dentries = NULL;
	}
	if (fs->inodes) {
		cds_lfht_first(fs->inodes, &it);
		while ((n = cds_lfht_iter_get_node(&it))) {
			cds_lfht_next(fs->inodes, &it);
			cds_lfht_del(fs->inodes, n);
			in = caa_container_of(n, struct inode, node);
			if (in->chan)
				chan_destroy(in->chan);
			free(in);
		}
		cds_lfht_destroy(fs->inodes, NULL);
		fs->inodes = NULL;
	}
	rcu_barrier();	/* frees queued by call_rcu */
}

int ns_init(struct ipcd_fs *fs)
{
	struct inode *root;

	fs->inodes = cds_lfht_new(1024, 1024, 0, CDS_LFHT_AUTO_RESIZE, NULL);
	fs->dentries = cds_lfht_new(1024, 1024, 0, CDS_LFHT_AUTO_RESIZE, NULL);
	if (!fs->inodes || !fs->dentries)
		return -ENOMEM;
	fs->next_ino = FUSE_ROOT_ID;
	root = inode_new(S_IFDIR | 0755, NULL, NULL);
	if (!root)
		return -ENOMEM;
	if (getuid() == 0)
		root->mode = S_IFDIR | 01777;	/* shared like /tmp */
	root->uid = getuid();
	root->gid = getgid();
	root->nlink = 2;
	cds_lfht_add(fs->inodes, ino_hash(root->ino), &root->node);
	/* Ring files are found by number, never listed. */
	fs->rings_dir = inode_new(S_IFDIR | 0111, NULL, NULL);
	if (!fs->rings_dir)
		return -ENOMEM;
	fs->rings_dir->uid = root->uid;
	fs->rings_dir->gid = root->gid;
	fs->rings_dir->nlink = 2;
	cds_lfht_add(fs->inodes, ino_hash(fs->rings_dir->ino), &fs->rings_dir->node);
	fs->pairs_dir = inode_new(S_IFDIR | 0100, NULL, NULL);
	if (!fs->pairs_dir)
		return -ENOMEM;
	fs->pairs_dir->uid = root->uid;
	fs->pairs_dir->gid = root->gid;
	fs->pairs_dir->nlink = 2;
	cds_lfht_add(fs->inodes, ino_hash(fs->pairs_dir->ino), &fs->pairs_dir->node);
	return 0;
}
