/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Counters of one stack: plain uint64 fields, written only by the stack's
 * own thread.  Another thread reading them for export may see a value a few
 * packets old, which is all metrics need; nothing here is exact across
 * fields.  STACK_STATS lists them once so that names for export (and for the
 * packet scripts' expect-counter) cannot drift from the struct.
 */
#ifndef TES_DATAPLANE_STACK_STATS_H
#define TES_DATAPLANE_STACK_STATS_H

#include <stddef.h>
#include <stdint.h>

#define STACK_STATS(X)                                                           \
	X(rx_frames)                                                             \
	X(rx_bytes)                                                              \
	X(tx_frames)                                                             \
	X(tx_bytes)                                                              \
	X(tx_nobuf) /* tx_alloc gave no buffer */                                \
	X(eth_short)                                                             \
	X(eth_not_ours) /* unicast to another MAC */                             \
	X(eth_unknown_type)                                                      \
	X(arp_rx)                                                                \
	X(arp_bad)                                                               \
	X(arp_requests_rx)                                                       \
	X(arp_replies_tx)                                                        \
	X(arp_requests_tx)                                                       \
	X(arp_replies_rx)                                                        \
	X(neigh_added)                                                           \
	X(neigh_evicted)                                                         \
	X(neigh_incomplete_full) /* could not start a resolution */              \
	X(neigh_unresolved)      /* a segment waited for ARP and was not sent */ \
	X(ip_rx)                                                                 \
	X(ip_bad_version)                                                        \
	X(ip_bad_hlen)                                                           \
	X(ip_bad_len)                                                            \
	X(ip_bad_src)                                                            \
	X(ip_not_ours)                                                           \
	X(ip_options) /* tolerated */                                            \
	X(ip_frag_dropped)                                                       \
	X(ip_unknown_proto)                                                      \
	X(checksum_errors) /* IPv4 header, ICMP and TCP together */              \
	X(ip_bad_csum)                                                           \
	X(icmp_bad_csum)                                                         \
	X(tcp_bad_csum)                                                          \
	X(icmp_echo_rx)                                                          \
	X(icmp_echo_tx)                                                          \
	X(icmp_other)                                                            \
	X(tcp_rx)                                                                \
	X(tcp_tx)                                                                \
	X(tcp_bad_hdr)                                                           \
	X(tcp_no_conn) /* no connection, no listener */                          \
	X(rst_rx)                                                                \
	X(rst_tx)                                                                \
	X(rst_ignored) /* out of window or in the wrong state */                 \
	X(syn_rx)                                                                \
	X(synack_tx)                                                             \
	X(syn_queue_full) /* listener backlog or syn_rcvd_max reached: cookie */ \
	X(syn_cookies_sent)                                                      \
	X(syn_cookies_validated)                                                 \
	X(syn_cookies_failed)                                                    \
	X(syn_refused_mem)      /* no memory at the handshake's ACK: RST */      \
	X(syn_refused_listener) /* listener closed */                            \
	X(syn_dropped)          /* other SYNs dropped (bad flags, duplicate) */  \
	X(early_drops)                                                           \
	X(accepts)                                                               \
	X(accept_refused)                                                        \
	X(connects)                                                              \
	X(connects_failed)                                                       \
	X(established)                                                           \
	X(retransmits) /* segments sent again (data, FIN, SYN) */                \
	X(syn_retransmits)                                                       \
	X(rto_expired)                                                           \
	X(fast_retransmits)                                                      \
	X(partial_acks)                                                          \
	X(persist_probes)                                                        \
	X(retries_exhausted)                                                     \
	X(dup_acks)                                                              \
	X(dup_segments)  /* data wholly below rcv_nxt */                         \
	X(out_of_window) /* unacceptable segments (answered by an ACK) */        \
	X(ooo_segments)                                                          \
	X(ooo_dropped) /* beyond the per-connection cap or ranges */             \
	X(rcv_trimmed) /* bytes beyond the receive window cut */                 \
	X(challenge_acks)                                                        \
	X(challenge_acks_limited)                                                \
	X(ack_invalid) /* ACK of SYN-RCVD not acceptable: RST */                 \
	X(delayed_acks)                                                          \
	X(window_updates)                                                        \
	X(zero_window_rx) /* segments from the peer advertising zero */          \
	X(data_rx_bytes)                                                         \
	X(data_tx_bytes)                                                         \
	X(idle_timeouts)                                                         \
	X(time_wait_expired)                                                     \
	X(time_wait_recycled)                                                    \
	X(time_wait_reopened)    /* a new SYN took over a TIME_WAIT */           \
	X(aborts)                /* tcp_abort */                                 \
	X(resets)                /* connections reset by the peer */             \
	X(syn_cookies_nomem)     /* cookie because no slot or budget was free */ \
	X(synack_pressure_drops) /* half-open given up early under pressure */   \
	X(arp_ignored)           /* ARP replies and announcements not learned */ \
	X(ip6_rx)                                                                \
	X(ip6_bad_hdr)  /* version, payload length against the frame */          \
	X(ip6_bad_ext)  /* extension header chain malformed or too long */       \
	X(ip6_bad_src)  /* multicast, unspecified, loopback, mapped, ours */     \
	X(ip6_not_ours) /* destination none of ours (or tentative) */            \
	X(ip6_frag_dropped)                                                      \
	X(ip6_unknown_proto)                                                     \
	X(icmp6_rx)                                                              \
	X(icmp6_bad) /* checksum, length, hop limit of ND not 255 */             \
	X(icmp6_echo_rx)                                                         \
	X(icmp6_echo_tx)                                                         \
	X(icmp6_other)                                                           \
	X(nd_ns_rx) /* solicitations for our addresses */                        \
	X(nd_na_tx)                                                              \
	X(nd_ns_tx)                                                              \
	X(nd_na_rx)      /* advertisements answering ours */                     \
	X(nd_ignored)    /* advertisements not learned (unsolicited, moved) */   \
	X(nd_dad_failed) /* an address of ours found in use: never used */

struct stack_stats {
#define STACK_STAT_FIELD(name) uint64_t name;
	STACK_STATS(STACK_STAT_FIELD)
#undef STACK_STAT_FIELD
	/* Gauges: connections in each enum tcp_state now. */
	uint64_t conns_by_state[11];
};

/* The counter's name ("retransmits") for index i, NULL past the end, and
 * its value; plus state gauges as "state_ESTABLISHED" etc. */
const char *stack_stat_name(size_t i);
uint64_t stack_stat_value(const struct stack_stats *s, size_t i);
/* By name; -1 when unknown. */
int stack_stat_get(const struct stack_stats *s, const char *name, uint64_t *value);

#endif
