/* TLS-terminating forwarders (see tunnel.h): each accepted connection is a TLS server bufferevent
 * (libevent's OpenSSL filter) paired, once its handshake is done, with a plain connection to the backend. Each
 * side reads only while the other's output is below HIGH_WATER, so a slow side holds the fast one back instead
 * of making Cove buffer. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "tunnel/tls_internal.h"
#include "util/alloc.h"
#include "util/log.h"

#define HIGH_WATER (256 * 1024)

struct front_conn {
	struct front_conn *next, *prev;
	struct cove_tls_front *f;
	struct bufferevent *client;  /* TLS */
	struct bufferevent *backend; /* NULL until the handshake is done */
	int backend_up;
	int closing; /* one side ended: the other's output drains, then both go */
};

struct cove_tls_front {
	struct event_base *base;
	struct cove_tls *tls;
	struct evconnlistener *listener;
	unsigned short port, backend_port;
	struct front_conn *conns;
	size_t n_conns;
};

static void
conn_free(struct front_conn *c)
{
	struct cove_tls_front *f = c->f;
	if (c->prev)
		c->prev->next = c->next;
	else
		f->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	f->n_conns--;
	if (c->client)
		bufferevent_free(c->client);
	if (c->backend)
		bufferevent_free(c->backend);
	free(c);
}

static struct bufferevent *
other(struct front_conn *c, struct bufferevent *bev)
{
	return bev == c->client ? c->backend : c->client;
}

/* Move what bev read to the other side, holding bev back while the other's output is full. */
static void
pump(struct front_conn *c, struct bufferevent *bev)
{
	struct bufferevent *to = other(c, bev);
	if (to == NULL || (bev == c->client && !c->backend_up))
		return; /* the backend is not connected yet: the input waits (bounded by the read watermark) */
	evbuffer_add_buffer(bufferevent_get_output(to), bufferevent_get_input(bev));
	if (evbuffer_get_length(bufferevent_get_output(to)) >= HIGH_WATER)
		bufferevent_disable(bev, EV_READ);
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	pump(arg, bev);
}

/* bev's output drained below the watermark: the other side may read again; a closing pair ends here. */
static void
on_write(struct bufferevent *bev, void *arg)
{
	struct front_conn *c = arg;
	if (c->closing) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			conn_free(c);
		return;
	}
	struct bufferevent *from = other(c, bev);
	if (from && !(bev == c->client && !c->backend_up))
		bufferevent_enable(from, EV_READ);
}

static void
end_side(struct front_conn *c, struct bufferevent *bev)
{
	struct bufferevent *to = other(c, bev);
	if (to && !c->closing && (bev == c->backend || c->backend_up)) {
		/* Pass on what was read, then close once the other side has written it. */
		evbuffer_add_buffer(bufferevent_get_output(to), bufferevent_get_input(bev));
		if (evbuffer_get_length(bufferevent_get_output(to)) > 0) {
			c->closing = 1;
			bufferevent_disable(bev, EV_READ | EV_WRITE);
			bufferevent_setwatermark(to, EV_WRITE, 0, 0);
			bufferevent_enable(to, EV_WRITE);
			return;
		}
	}
	conn_free(c);
}

static void on_backend_event(struct bufferevent *bev, short what, void *arg);

static void
on_client_event(struct bufferevent *bev, short what, void *arg)
{
	struct front_conn *c = arg;
	if (what & BEV_EVENT_CONNECTED) {
		/* The handshake is done: no deadline any more (a tunnel may stay quiet), and the backend next. */
		bufferevent_set_timeouts(bev, NULL, NULL);
		c->backend = bufferevent_socket_new(c->f->base, -1, BEV_OPT_CLOSE_ON_FREE);
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(c->f->backend_port),
					.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		bufferevent_setcb(c->backend, on_read, on_write, on_backend_event, c);
		bufferevent_setwatermark(c->backend, EV_READ, 0, HIGH_WATER);
		bufferevent_setwatermark(c->backend, EV_WRITE, HIGH_WATER / 2, 0);
		if (bufferevent_socket_connect(c->backend, (struct sockaddr *)&a, sizeof(a)) < 0) {
			conn_free(c);
			return;
		}
		bufferevent_enable(c->backend, EV_READ | EV_WRITE);
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		end_side(c, bev);
}

static void
on_backend_event(struct bufferevent *bev, short what, void *arg)
{
	struct front_conn *c = arg;
	if (what & BEV_EVENT_CONNECTED) {
		c->backend_up = 1;
		pump(c, c->client); /* what the client sent while the backend was connecting */
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		end_side(c, bev);
}

static void
on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
	(void)l;
	(void)sa;
	(void)len;
	struct cove_tls_front *f = arg;
	if (f->n_conns >= COVE_TLS_FRONT_MAX_CONNS) {
		close(fd);
		return;
	}
	SSL *ssl = SSL_new(f->tls->ctx);
	if (ssl == NULL) {
		close(fd);
		return;
	}
	struct front_conn *c = xcalloc(1, sizeof(*c));
	c->f = f;
	c->client = bufferevent_openssl_socket_new(f->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
						   BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (c->client == NULL) {
		SSL_free(ssl);
		close(fd);
		free(c);
		return;
	}
	c->next = f->conns;
	if (f->conns)
		f->conns->prev = c;
	f->conns = c;
	f->n_conns++;
	bufferevent_openssl_set_allow_dirty_shutdown(c->client, 1);
	bufferevent_setcb(c->client, on_read, on_write, on_client_event, c);
	bufferevent_setwatermark(c->client, EV_READ, 0, HIGH_WATER);
	bufferevent_setwatermark(c->client, EV_WRITE, HIGH_WATER / 2, 0);
	struct timeval handshake = {COVE_TLS_HANDSHAKE_S, 0};
	bufferevent_set_timeouts(c->client, &handshake, &handshake);
	bufferevent_enable(c->client, EV_READ | EV_WRITE);
}

struct cove_tls_front *
cove_tls_front_new(struct event_base *base, struct cove_tls *tls, unsigned short backend_port, struct cove_error **err)
{
	struct cove_tls_front *f = xcalloc(1, sizeof(*f));
	f->base = base;
	f->tls = tls;
	f->backend_port = backend_port;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	f->listener = evconnlistener_new_bind(base, on_accept, f, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1,
					      (struct sockaddr *)&a, sizeof(a));
	if (f->listener == NULL) {
		cove_error_set_errno(err, errno, "TLS tunnel: listen on 127.0.0.1");
		free(f);
		return NULL;
	}
	struct sockaddr_in got;
	socklen_t gl = sizeof(got);
	if (getsockname(evconnlistener_get_fd(f->listener), (struct sockaddr *)&got, &gl) == 0)
		f->port = ntohs(got.sin_port);
	return f;
}

unsigned short
cove_tls_front_port(const struct cove_tls_front *f)
{
	return f->port;
}

void
cove_tls_front_free(struct cove_tls_front *f)
{
	if (f == NULL)
		return;
	evconnlistener_free(f->listener);
	while (f->conns)
		conn_free(f->conns);
	free(f);
}
