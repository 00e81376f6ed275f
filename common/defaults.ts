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
} as const;
