/*
 * Prometheus metrics over libevent's evhttp on metrics_listen (loopback by
 * default): GET /metrics (text exposition format 0.0.4), GET /healthz.
 */
#ifndef TP_SUPERVISOR_METRICS_H
#define TP_SUPERVISOR_METRICS_H

struct sup;
struct metrics;
struct evbuffer;

/* Starts serving sup->cfg->metrics_listen ("" = off: returns NULL, no error). */
struct metrics *metrics_new(struct sup *sup, int *err);
void metrics_free(struct metrics *m);
/* Renders the exposition into buf (also used by tests and `top`). */
void metrics_render(struct sup *sup, struct evbuffer *buf);

#endif
