/**
 * Every default of weft's configuration, in one place: weftd's options (flanneld's
 * defaults where the flags overlap), the etcd keyspace, the subnet file and the ports.
 * Modules read a default from here; none writes its own copy.
 */

/** flannel's etcd keyspace: `<prefix>/config` and `<prefix>/subnets/`. */
export const DEFAULT_ETCD_PREFIX = '/coreos.com/network';

/** Where the runtimes (Docker, the CNI plugin) read the node's lease: flannel's path. */
export const DEFAULT_SUBNET_FILE = '/run/flannel/subnet.env';

/** The kernel's VXLAN UDP port, used when the network config gives `Port` 0 or none. */
export const VXLAN_DEFAULT_PORT = 8472;

/** UDP port of weft's peer-health echo. */
export const DEFAULT_PROBE_PORT = 8473;

/** weftd's options, by long flag name: the values yargs declares and validation falls back to. */
export const WEFTD_DEFAULTS = {
  'etcd-endpoints': 'http://127.0.0.1:4001,http://127.0.0.1:2379',
  'etcd-prefix': DEFAULT_ETCD_PREFIX,
  'subnet-file': DEFAULT_SUBNET_FILE,
  'subnet-lease-renew-margin': 60,
  'subnet-lease-ttl': 86400,
  'ip-masq': false,
  'ip-masq-fully-random-disable': false,
  'iptables-forward-rules': true,
  'iptables-resync': 5,
  'healthz-ip': '0.0.0.0',
  'healthz-port': 0,
  'state-dir': '/var/lib/weft',
  'log-level': 'info',
  'log-format': 'text',
  'resync-interval': 60,
  'probe-port': DEFAULT_PROBE_PORT,
  'probe-interval': 10,
  'probe-sample': 32,
  'route-nexthops': 'auto',
} as const;

/**
 * gRPC keepalive on every etcd connection: an HTTP/2 ping after this much
 * quiet, and the connection closed when the ping goes unanswered for
 * ETCD_KEEPALIVE_TIMEOUT_MS. etcd refuses pings closer than its
 * --grpc-keepalive-min-time (5 s by default) with GOAWAY too_many_pings,
 * hence twice that.
 */
export const ETCD_KEEPALIVE_TIME_MS = 10_000;
export const ETCD_KEEPALIVE_TIMEOUT_MS = 5_000;
/** gRPC's reconnect backoff to etcd (its own default cap is 120 s, which would delay recovery after a partition). */
export const ETCD_RECONNECT_BACKOFF_MS = { initial: 500, max: 2_000 } as const;

/**
 * Watch liveness: an etcd watch on an idle cluster sends nothing, so after
 * this much silence weftd asks etcd for a progress notification (one small
 * message on the watch stream)...
 */
export const ETCD_WATCH_PROGRESS_AFTER_MS = 3_000;
/** ...and a watch that has shown no sign of life for this long is stale: cancelled, reported, and replaced by a re-list. */
export const ETCD_WATCH_STALE_AFTER_MS = 6_000;
/** Longest wait between attempts to list again after a watch failed (the re-list is what converges after a partition). */
export const ETCD_RELIST_BACKOFF_MAX_MS = 2_000;
/** While etcd stays out of reach, the log says so again at this interval, with how long it has lasted. */
export const ETCD_UNREACHABLE_LOG_INTERVAL_MS = 60_000;

/** How peer routes are programmed: through nexthop objects (`on`), with a gateway each (`off`), or nexthops where the kernel has them (`auto`). */
export const ROUTE_NEXTHOPS_MODES = ['auto', 'on', 'off'] as const;
export type RouteNexthopsMode = (typeof ROUTE_NEXTHOPS_MODES)[number];
