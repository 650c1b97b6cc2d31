/* SPDX-License-Identifier: BSD-3-Clause */
#include "controlplane/loop.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "contract/ctlproto.h"
#include "controlplane/log.h"

int cp_loop_init(struct cp_loop *l)
{
	l->stop = false;
	l->next_conn_id = 0;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	return l->epfd < 0 ? -1 : 0;
}

void cp_loop_fini(struct cp_loop *l)
{
	if (l->epfd >= 0)
		close(l->epfd);
	l->epfd = -1;
}

int cp_loop_round(struct cp_loop *l)
{
	struct epoll_event ev[64];
	int n = epoll_wait(l->epfd, ev, 64, -1);

	if (n < 0) {
		if (errno == EINTR)
			return 0;
		cp_err("epoll_wait: %s", strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		struct cp_watch *w = ev[i].data.ptr;

		w->fn(w, ev[i].events);
	}
	return 0;
}

int cp_outq_push(struct cp_outq *q, json_t *msg)
{
	char err[CTL_ERR_MAX];
	uint8_t *frame;
	size_t n;
	int rc;

	if (!msg)
		return -1;
	rc = ctl_frame_encode(msg, &frame, &n, err, sizeof(err));
	json_decref(msg);
	if (rc) {
		cp_err("cannot send a message: %s", err);
		return -1;
	}
	rc = cp_outq_push_raw(q, frame, n);
	free(frame);
	return rc;
}

int cp_outq_push_raw(struct cp_outq *q, const uint8_t *frame, size_t n)
{
	if (q->head > 0 && q->head + q->len + n > q->cap) {
		memmove(q->buf, q->buf + q->head, q->len);
		q->head = 0;
	}
	if (q->len + n > q->cap) {
		size_t cap = q->cap ? q->cap : 4096;
		uint8_t *nb;

		while (cap < q->len + n)
			cap *= 2;
		nb = realloc(q->buf, cap);
		if (!nb)
			return -1;
		q->buf = nb;
		q->cap = cap;
	}
	memcpy(q->buf + q->head + q->len, frame, n);
	q->len += n;
	return 0;
}

int cp_outq_flush(struct cp_outq *q, int fd)
{
	while (q->len) {
		ssize_t n = send(fd, q->buf + q->head, q->len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -1;
		}
		q->head += (size_t)n;
		q->len -= (size_t)n;
	}
	q->head = 0;
	/* A full sync can queue megabytes; do not keep them afterwards. */
	if (q->cap > 1024 * 1024) {
		free(q->buf);
		q->buf = NULL;
		q->cap = 0;
	}
	return 1;
}

void cp_outq_free(struct cp_outq *q)
{
	free(q->buf);
	memset(q, 0, sizeof(*q));
}

int cp_listen_unix(const char *path, bool with_group, gid_t gid, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	struct stat sb;
	mode_t old;
	int fd;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "%s: socket path too long", path);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path));
	if (lstat(path, &sb) == 0) {
		int probe;

		if (!S_ISSOCK(sb.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a socket", path);
			return -1;
		}
		/* A socket someone still accepts on is another daemon's. */
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(probe);
			snprintf(err, errlen, "%s: another process is listening there", path);
			return -1;
		}
		if (probe >= 0)
			close(probe);
		if (unlink(path) && errno != ENOENT) {
			snprintf(err, errlen, "%s: cannot remove the stale socket: %s", path,
				 strerror(errno));
			return -1;
		}
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	/* Created owner-only, widened to the group once its group is set: no
	 * moment where someone else could connect. */
	old = umask(0177);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		umask(old);
		snprintf(err, errlen, "%s: bind: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	umask(old);
	if (with_group) {
		if (chown(path, (uid_t)-1, gid) || chmod(path, 0660)) {
			/* sun_path, not path: gcc's sanitizer build otherwise
			 * "sees" a NULL path after chown's nonnull check. */
			snprintf(err, errlen, "%s: cannot give the socket to group %u: %s",
				 sa.sun_path, (unsigned)gid, strerror(errno));
			unlink(path);
			close(fd);
			return -1;
		}
	}
	if (listen(fd, 128)) {
		snprintf(err, errlen, "%s: listen: %s", path, strerror(errno));
		unlink(path);
		close(fd);
		return -1;
	}
	return fd;
}

int cp_peer_check(int fd, bool with_group, gid_t gid, struct ucred *cred, char *err, size_t errlen)
{
	socklen_t sl = sizeof(*cred);
	gid_t groups[256];
	socklen_t gl = sizeof(groups);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, &sl) || sl != sizeof(*cred)) {
		snprintf(err, errlen, "cannot read the peer's credentials: %s", strerror(errno));
		return -1;
	}
	if (cred->uid == 0 || cred->uid == geteuid())
		return 0;
	if (with_group) {
		if (cred->gid == gid)
			return 0;
		/* The peer's supplementary groups as they were at connect(),
		 * not as the group file says now. */
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &gl) == 0) {
			for (size_t i = 0; i < gl / sizeof(gid_t); i++) {
				if (groups[i] == gid)
					return 0;
			}
		}
	}
	snprintf(err, errlen, "uid %u (gid %u, pid %d) is neither root nor %s", (unsigned)cred->uid,
		 (unsigned)cred->gid, (int)cred->pid,
		 with_group ? "in the configured group" : "tescontrol's own user");
	return -1;
}

int cp_watch_add(struct cp_loop *l, struct cp_watch *w, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = w };

	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, w->fd, &ev);
}

int cp_watch_mod(struct cp_loop *l, struct cp_watch *w, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = w };

	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, w->fd, &ev);
}

void cp_watch_del(struct cp_loop *l, struct cp_watch *w)
{
	if (w->fd >= 0)
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
}
