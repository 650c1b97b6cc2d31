/* SPDX-License-Identifier: BSD-3-Clause */
#include "dataplane/dpdk/port.h"
#include "dataplane/dpdk/impair.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

static bool has_prefix(const char *s, const char *p)
{
	return strncmp(s, p, strlen(p)) == 0;
}

int dp_eal_args_check(int argc, char *const argv[], bool *need_in_memory, const char **why)
{
	bool no_pci = false, allow = false, private_files = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--no-pci") == 0)
			no_pci = true;
		/* An allow-list names the devices; an empty one would
		 * probe everything, so the value must be present. */
		else if ((strcmp(a, "-a") == 0 || strcmp(a, "--allow") == 0) && i + 1 < argc &&
			 argv[i + 1][0] != '\0')
			allow = true;
		else if ((has_prefix(a, "-a") && a[2] != '\0' && a[1] == 'a') ||
			 (has_prefix(a, "--allow=") && a[8] != '\0'))
			allow = true;
		else if (strcmp(a, "--in-memory") == 0 || has_prefix(a, "--file-prefix"))
			private_files = true;
	}
	if (!no_pci && !allow) {
		/* A block-list (-b) is not enough: it still probes every other
		 * PCI device. */
		*why = "refusing to start DPDK without --no-pci or an explicit -a/--allow list "
		       "(the machine's own NIC is a PCI device)";
		return -1;
	}
	*need_in_memory = !private_files;
	return 0;
}

/* The EAL keeps pointers into the argv it was given until rte_eal_cleanup. */
static char **eal_argv;

int dp_eal_init(int argc, char *argv[])
{
	bool need_mem = false;
	const char *why = NULL;
	if (dp_eal_args_check(argc, argv, &need_mem, &why) != 0) {
		fprintf(stderr, "dpdk: %s\n", why);
		return -1;
	}
	char **v = calloc((size_t)argc + 2, sizeof(*v));
	if (!v)
		return -1;
	for (int i = 0; i < argc; i++)
		v[i] = argv[i];
	int n = argc;
	if (need_mem)
		v[n++] = (char *)"--in-memory";
	if (rte_eal_init(n, v) < 0) {
		fprintf(stderr, "dpdk: rte_eal_init: %s\n", rte_strerror(rte_errno));
		free(v);
		return -1;
	}
	eal_argv = v;
	return 0;
}

void dp_eal_cleanup(void)
{
	rte_eal_cleanup();
	free(eal_argv);
	eal_argv = NULL;
}

static int make_pool(struct dp_port *p, int socket, unsigned n)
{
	if (socket < 0)
		socket = 0;
	if (socket >= DP_MAX_SOCKETS)
		return -1;
	if (p->pool[socket])
		return 0;
	char name[RTE_MEMPOOL_NAMESIZE];
	snprintf(name, sizeof(name), "tes_p%u_s%d", p->port_id, socket);
	p->pool[socket] =
		rte_pktmbuf_pool_create(name, n, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
	if (!p->pool[socket]) {
		fprintf(stderr, "dpdk: mbuf pool on socket %d: %s\n", socket,
			rte_strerror(rte_errno));
		return -1;
	}
	return 0;
}

struct rte_mempool *dp_port_pool(const struct dp_port *p, int socket)
{
	if (socket < 0 || socket >= DP_MAX_SOCKETS || !p->pool[socket])
		socket = p->socket;
	return p->pool[socket];
}

static void log_key(const char *what, const struct dp_port *p, const uint8_t *k, unsigned n)
{
	printf("dpdk: port %u: %s ", p->port_id, what);
	for (unsigned i = 0; i < n; i++)
		printf("%02x", k[i]);
	printf("\n");
}

/* After start: program the RETA (entry i -> queue i % nb_queues), then read
 * the key and the RETA back and compare them with what was set, because
 * the steering of active opens (dp_rss_pick_port) computes the NIC's
 * choice itself and a silent difference would send replies to the wrong
 * worker.  A port that cannot be read falls back to software steering
 * (p->rss false); a port that reads back something else is an error. */
static int rss_program_and_check(struct dp_port *p, const struct rte_eth_dev_info *di,
				 const uint8_t *key, unsigned keylen)
{
	unsigned n = di->reta_size;
	unsigned groups = (n + RTE_ETH_RETA_GROUP_SIZE - 1) / RTE_ETH_RETA_GROUP_SIZE;
	struct rte_eth_rss_reta_entry64 *re = calloc(groups, sizeof(*re));
	if (!re)
		return -1;
	for (unsigned i = 0; i < n; i++) {
		re[i / RTE_ETH_RETA_GROUP_SIZE].mask |= 1ull << (i % RTE_ETH_RETA_GROUP_SIZE);
		re[i / RTE_ETH_RETA_GROUP_SIZE].reta[i % RTE_ETH_RETA_GROUP_SIZE] =
			(uint16_t)(i % p->nb_queues);
	}
	int rc = rte_eth_dev_rss_reta_update(p->port_id, re, (uint16_t)n);
	bool programmed = rc == 0;
	if (!programmed)
		printf("dpdk: port %u: RETA update: %s; using the port's own\n", p->port_id,
		       rte_strerror(-rc));
	for (unsigned g = 0; g < groups; g++) {
		memset(re[g].reta, 0xff, sizeof(re[g].reta));
	}
	rc = rte_eth_dev_rss_reta_query(p->port_id, re, (uint16_t)n);
	if (rc != 0) {
		printf("dpdk: port %u: RETA not readable (%s): software steering\n", p->port_id,
		       rte_strerror(-rc));
		free(re);
		return 1;
	}
	int bad = -1;
	for (unsigned i = 0; i < n; i++) {
		uint16_t q = re[i / RTE_ETH_RETA_GROUP_SIZE].reta[i % RTE_ETH_RETA_GROUP_SIZE];
		p->reta[i] = q;
		if (bad < 0 && (q >= p->nb_queues || (programmed && q != i % p->nb_queues)))
			bad = (int)i;
	}
	free(re);
	printf("dpdk: port %u: RETA (%u):", p->port_id, n);
	for (unsigned i = 0; i < n; i++)
		printf(" %u", p->reta[i]);
	printf("\n");
	if (bad >= 0) {
		fprintf(stderr,
			"dpdk: port %u: RETA read back differs: entry %d is %u, set %u (%u "
			"queues)\n",
			p->port_id, bad, p->reta[bad], (unsigned)bad % p->nb_queues, p->nb_queues);
		return -1;
	}

	uint8_t got[64];
	memset(got, 0, sizeof(got));
	struct rte_eth_rss_conf rc2 = { .rss_key = got, .rss_key_len = (uint8_t)keylen };
	rc = rte_eth_dev_rss_hash_conf_get(p->port_id, &rc2);
	if (rc != 0) {
		printf("dpdk: port %u: RSS key not readable (%s): software steering\n", p->port_id,
		       rte_strerror(-rc));
		return 1;
	}
	if (memcmp(got, key, keylen) != 0) {
		/* Some PMDs (net_null) ignore the key given at configure
		 * time: set it explicitly once, then it must read back. */
		struct rte_eth_rss_conf up = { .rss_key = (uint8_t *)(uintptr_t)key,
					       .rss_key_len = (uint8_t)keylen,
					       .rss_hf = rc2.rss_hf | RTE_ETH_RSS_NONFRAG_IPV4_TCP |
							 (di->flow_type_rss_offloads &
							  RTE_ETH_RSS_NONFRAG_IPV6_TCP) };
		rc = rte_eth_dev_rss_hash_update(p->port_id, &up);
		if (rc != 0)
			printf("dpdk: port %u: RSS key update: %s\n", p->port_id,
			       rte_strerror(-rc));
		memset(got, 0, sizeof(got));
		rc2 = (struct rte_eth_rss_conf){ .rss_key = got, .rss_key_len = (uint8_t)keylen };
		rc = rte_eth_dev_rss_hash_conf_get(p->port_id, &rc2);
		if (rc != 0)
			memset(got, 0, sizeof(got));
	}
	log_key("RSS key read back", p, got, keylen);
	if (memcmp(got, key, keylen) != 0) {
		log_key("RSS key set", p, key, keylen);
		fprintf(stderr, "dpdk: port %u: the RSS key read back differs from the key set\n",
			p->port_id);
		return -1;
	}
	if (!(rc2.rss_hf & RTE_ETH_RSS_NONFRAG_IPV4_TCP)) {
		fprintf(stderr, "dpdk: port %u: RSS hash types 0x%" PRIx64 " lack TCP/IPv4\n",
			p->port_id, rc2.rss_hf);
		return -1;
	}
	p->reta_size = (uint16_t)n;
	p->rss = true;
	/* IPv6 segments are steered by the NIC's hash only if it hashed their
	 * 4-tuple; otherwise the workers hash them in software. */
	p->rss6 = (rc2.rss_hf & RTE_ETH_RSS_NONFRAG_IPV6_TCP) != 0;
	printf("dpdk: port %u: RSS on TCP/IPv4 (hf 0x%" PRIx64 "), key and RETA verified\n",
	       p->port_id, rc2.rss_hf);
	return 0;
}

int dp_port_setup(struct dp_port *p, const struct dp_port_conf *conf)
{
	memset(p, 0, sizeof(*p));
	p->port_id = conf->port_id;
	p->nb_queues = conf->nb_queues ? conf->nb_queues : 1;
	if (p->nb_queues > DP_MAX_QUEUES || !rte_eth_dev_is_valid_port(p->port_id)) {
		fprintf(stderr, "dpdk: port %u: invalid port or queue count\n", p->port_id);
		return -1;
	}
	struct rte_eth_dev_info di;
	int rc = rte_eth_dev_info_get(p->port_id, &di);
	if (rc != 0) {
		fprintf(stderr, "dpdk: port %u: dev_info: %s\n", p->port_id, rte_strerror(-rc));
		return -1;
	}
	if (p->nb_queues > di.max_rx_queues || p->nb_queues > di.max_tx_queues) {
		fprintf(stderr, "dpdk: port %u (%s): %u queues asked, %u/%u offered\n", p->port_id,
			di.driver_name, p->nb_queues, di.max_rx_queues, di.max_tx_queues);
		return -1;
	}
	p->socket = rte_eth_dev_socket_id(p->port_id);
	if (p->socket < 0 || p->socket >= DP_MAX_SOCKETS)
		p->socket = 0;
	unsigned nmbufs = conf->mbufs_per_socket ? conf->mbufs_per_socket : 8191;
	if (make_pool(p, p->socket, nmbufs) != 0)
		return -1;
	unsigned lc;
	RTE_LCORE_FOREACH(lc)
	{
		if (make_pool(p, (int)rte_lcore_to_socket_id(lc), nmbufs) != 0)
			return -1;
	}

	struct rte_eth_conf ec;
	memset(&ec, 0, sizeof(ec));
	const uint64_t want_tx = RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | RTE_ETH_TX_OFFLOAD_TCP_CKSUM;
	if (!conf->no_csum_offload && (di.tx_offload_capa & want_tx) == want_tx) {
		ec.txmode.offloads |= want_tx;
		p->tx_csum_offload = true;
	}
	/* Our key, stretched by its own period when the port's is longer
	 * (only the first 16 bytes matter for a TCP/IPv4 4-tuple). */
	uint8_t key[64];
	unsigned keylen = di.hash_key_size ? di.hash_key_size : DP_RSS_KEY_LEN;
	for (unsigned i = 0; i < sizeof(key); i++)
		key[i] = dp_rss_key[i % DP_RSS_KEY_LEN];
	bool want_rss = p->nb_queues > 1 &&
			(di.flow_type_rss_offloads & RTE_ETH_RSS_NONFRAG_IPV4_TCP) &&
			di.reta_size > 0 && di.reta_size <= DP_RETA_MAX && keylen >= 16 &&
			keylen <= sizeof(key);
	if (want_rss) {
		ec.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		ec.rx_adv_conf.rss_conf.rss_key = key;
		ec.rx_adv_conf.rss_conf.rss_key_len = (uint8_t)keylen;
		ec.rx_adv_conf.rss_conf.rss_hf =
			RTE_ETH_RSS_NONFRAG_IPV4_TCP |
			(di.flow_type_rss_offloads &
			 (RTE_ETH_RSS_IPV4 | RTE_ETH_RSS_NONFRAG_IPV6_TCP | RTE_ETH_RSS_IPV6));
		if (di.rx_offload_capa & RTE_ETH_RX_OFFLOAD_RSS_HASH)
			ec.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_RSS_HASH;
	} else if (p->nb_queues > 1) {
		printf("dpdk: port %u (%s): no usable RSS (flow types 0x%" PRIx64
		       ", RETA %u, key %u bytes): software steering\n",
		       p->port_id, di.driver_name, di.flow_type_rss_offloads, di.reta_size,
		       di.hash_key_size);
	}
	rc = rte_eth_dev_configure(p->port_id, p->nb_queues, p->nb_queues, &ec);
	if (rc != 0) {
		fprintf(stderr, "dpdk: port %u: configure: %s\n", p->port_id, rte_strerror(-rc));
		return -1;
	}
	uint16_t nrx = conf->nb_rxd ? conf->nb_rxd : 1024, ntx = conf->nb_txd ? conf->nb_txd : 1024;
	rc = rte_eth_dev_adjust_nb_rx_tx_desc(p->port_id, &nrx, &ntx);
	if (rc != 0) {
		fprintf(stderr, "dpdk: port %u: descriptors: %s\n", p->port_id, rte_strerror(-rc));
		return -1;
	}
	/* Queue q belongs to the q-th enabled lcore; its descriptors and
	 * mbufs live on that lcore's node. */
	uint16_t q = 0;
	RTE_LCORE_FOREACH(lc)
	{
		if (q == p->nb_queues)
			break;
		int sock = (int)rte_lcore_to_socket_id(lc);
		struct rte_eth_txconf txc = di.default_txconf;
		txc.offloads = ec.txmode.offloads;
		rc = rte_eth_rx_queue_setup(p->port_id, q, nrx, (unsigned)sock, NULL,
					    dp_port_pool(p, sock));
		if (rc == 0)
			rc = rte_eth_tx_queue_setup(p->port_id, q, ntx, (unsigned)sock, &txc);
		if (rc != 0) {
			fprintf(stderr, "dpdk: port %u: queue %u: %s\n", p->port_id, q,
				rte_strerror(-rc));
			return -1;
		}
		q++;
	}
	if (q < p->nb_queues) {
		fprintf(stderr, "dpdk: %u queues but only %u lcores\n", p->nb_queues, q);
		return -1;
	}
	rc = rte_eth_dev_start(p->port_id);
	if (rc != 0) {
		fprintf(stderr, "dpdk: port %u: start: %s\n", p->port_id, rte_strerror(-rc));
		return -1;
	}
	struct rte_ether_addr ea;
	rte_eth_macaddr_get(p->port_id, &ea);
	memcpy(p->mac, ea.addr_bytes, 6);
	printf("dpdk: port %u (%s) socket %d, %u queue(s), mac %02x:%02x:%02x:%02x:%02x:%02x, "
	       "tx_offload_capa 0x%" PRIx64 ", checksums %s\n",
	       p->port_id, di.driver_name, p->socket, p->nb_queues, p->mac[0], p->mac[1], p->mac[2],
	       p->mac[3], p->mac[4], p->mac[5], di.tx_offload_capa,
	       p->tx_csum_offload ? "offloaded" : "software");
	if (want_rss && rss_program_and_check(p, &di, key, keylen) < 0) {
		fflush(stdout);
		rte_eth_dev_stop(p->port_id);
		return -1;
	}
	fflush(stdout);
	return 0;
}

void dp_port_log_stats(const struct dp_port *p, FILE *f)
{
	struct rte_eth_stats s;
	if (rte_eth_stats_get(p->port_id, &s) != 0) {
		fprintf(f, "dpdk: port %u counters: unavailable\n", p->port_id);
		return;
	}
	fprintf(f,
		"dpdk: port %u counters: ipackets %" PRIu64 " opackets %" PRIu64 " ibytes %" PRIu64
		" obytes %" PRIu64 " imissed %" PRIu64 " ierrors %" PRIu64 " oerrors %" PRIu64
		" rx_nombuf %" PRIu64 "\n",
		p->port_id, s.ipackets, s.opackets, s.ibytes, s.obytes, s.imissed, s.ierrors,
		s.oerrors, s.rx_nombuf);
}

void dp_port_close(struct dp_port *p)
{
	for (uint16_t q = 0; q < p->nb_queues; q++)
		dp_impair_detach(p, q);
	rte_eth_dev_stop(p->port_id);
	rte_eth_dev_close(p->port_id);
	for (int i = 0; i < DP_MAX_SOCKETS; i++) {
		rte_mempool_free(p->pool[i]);
		p->pool[i] = NULL;
	}
}
