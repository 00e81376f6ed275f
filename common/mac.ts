/**
 * MAC addresses as weft accepts them: six lower-case hex pairs joined by colons
 * (how the kernel and flannel's leases print them). A VTEP or neighbour MAC must
 * be unicast: the multicast bit (0x01 of the first octet) clear, and not all zeros.
 */
const MAC_PATTERN = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;

/** The MAC in canonical (lower-case) form, or null when `text` is not a MAC address. */
export function canonicalMac(text: string): string | null {
  const mac = text.toLowerCase();
  return MAC_PATTERN.test(mac) ? mac : null;
}

/** True for a canonical MAC that may name one interface (unicast, not 00:00:00:00:00:00). */
export function isUnicastMac(mac: string): boolean {
  return canonicalMac(mac) === mac && (parseInt(mac.slice(0, 2), 16) & 0x01) === 0 && mac !== '00:00:00:00:00:00';
}
