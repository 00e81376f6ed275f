/**
 * The delegate config: what weft-cni hands to the plugin that does the work
 * (bridge, with host-local for addresses), built from the network config and
 * the subnet file by flannel's CNI plugin's rules, so that a pod gets the same
 * interface, address and routes under either plugin:
 *
 * - the `delegate` object's keys, then `name` = the network's name;
 * - unless the delegate sets them: `type` bridge, `ipMasq` = !FLANNEL_IPMASQ
 *   (weftd masquerades when it runs with --ip-masq, so the bridge must not),
 *   `mtu` = FLANNEL_MTU, and for bridge `isGateway` true;
 * - `cniVersion` the network config's, `runtimeConfig` copied;
 * - `ipam`: the user's `ipam` keys, `type` default host-local, `ranges` one
 *   range per family: the node's subnet (FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET),
 *   `routes` the user's plus one to each network (FLANNEL_NETWORK,
 *   FLANNEL_IPV6_NETWORK).
 *
 * One difference: with host-local, the routes weft adds name their gateway
 * (the subnet's first address, host-local's default gateway, which the pod
 * uses for them anyway). The bridge plugin's CHECK compares each route of the
 * ADD result with the pod's routing table literally, and a route without
 * `gw` never matches the one the bridge installed via the gateway; flannel's
 * plugin has no CHECK, so it never met this.
 */
import type { SubnetEnv } from '../lease/subnet-env.js';
import type { JsonObject, NetConf } from './conf.js';

/** The delegate config for `conf` on a node whose subnet file says `env`. */
export function buildDelegate(conf: NetConf, env: SubnetEnv): JsonObject {
  const d: JsonObject = { ...(conf.delegate ?? {}) };
  d.name = conf.name;
  if (!('type' in d)) d.type = 'bridge';
  if (!('ipMasq' in d)) d.ipMasq = !env.ipMasq;
  if (!('mtu' in d)) d.mtu = env.mtu;
  if (d.type === 'bridge' && !('isGateway' in d)) d.isGateway = true;
  d.cniVersion = conf.cniVersion;
  if (conf.runtimeConfig) d.runtimeConfig = conf.runtimeConfig;
  d.ipam = delegateIpam(conf, env);
  return d;
}

function delegateIpam(conf: NetConf, env: SubnetEnv): JsonObject {
  const ipam: JsonObject = { ...(conf.ipam ?? {}) };
  if (!('type' in ipam)) ipam.type = 'host-local';
  const hostLocal = ipam.type === 'host-local';
  const ranges: JsonObject[][] = [];
  const routes: unknown[] = Array.isArray(ipam.routes) ? [...(ipam.routes as unknown[])] : [];
  for (const [subnet, networks] of [
    [env.subnet, env.networks],
    [env.ipv6Subnet, env.ipv6Networks],
  ] as const) {
    if (subnet) ranges.push([{ subnet: subnet.toString() }]);
    for (const network of networks) {
      routes.push(hostLocal && subnet ? { dst: network.toString(), gw: subnet.addressAt(1) } : { dst: network.toString() });
    }
  }
  ipam.ranges = ranges;
  ipam.routes = routes;
  return ipam;
}

/** The delegate's plugin type (a string: parseNetConf checked the `delegate` object's). */
export function delegateType(d: JsonObject): string {
  return typeof d.type === 'string' ? d.type : '';
}
