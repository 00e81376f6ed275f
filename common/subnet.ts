import { WeftError } from './errors.js';

/**
 * An IPv4 or IPv6 network (address + prefix length), always held in masked
 * form. Both families are hot paths (every lease key and value at start-up
 * and on every watch event, twice per dual-stack lease): IPv4 is read digit
 * by digit (parseIPv4) and converted with plain arithmetic, IPv6 is read into
 * its eight groups (parseIPv6) and written back in RFC 5952 form
 * (formatIPv6), without building an object per address.
 */
export class Subnet {
  private constructor(
    /** 4 or 6. */
    readonly family: 4 | 6,
    /** The network address, e.g. `10.244.3.0`. */
    readonly ip: string,
    readonly prefixLength: number,
    private readonly base: bigint,
  ) {}

  /**
   * Parses `a.b.c.d/len` (or IPv6). Host bits are masked like Go's
   * net.ParseCIDR (`10.1.2.3/16` -> `10.1.0.0/16`). Throws
   * WEFT_ERR_ADDRESS_INVALID on anything else.
   */
  static parse(cidr: string): Subnet {
    const s = String(cidr);
    if (!s.includes('/')) throw invalid(`invalid CIDR "${s}": missing /prefix-length`);
    if (s.includes('%')) throw invalid(`invalid CIDR "${s}": zone not allowed`);
    const [addr, len, extra] = s.split('/');
    if (extra !== undefined) throw invalid(`invalid CIDR "${s}"`);
    if (!/^\d{1,3}$/.test(len ?? '') || String(Number(len)) !== len) {
      throw invalid(`invalid CIDR "${s}": bad prefix length`);
    }
    const v4 = addr ? parseIPv4(addr) : null;
    if (v4 !== null && Number(len) <= 32) return Subnet.ofIPv4(addr!, v4, Number(len));
    const groups = addr && Number(len) <= 128 ? parseIPv6(addr) : null;
    if (groups) return Subnet.ofIPv6(groups, Number(len));
    throw invalid(`invalid CIDR "${s}"`);
  }

  /** Like parse(), but rejects a CIDR with host bits set instead of masking them. */
  static parseCanonical(cidr: string): Subnet {
    const sn = Subnet.parse(cidr);
    const given = String(cidr).split('/')[0] ?? '';
    const sameIp = sn.family === 4 ? given === sn.ip : ipValue(given)?.value === sn.base;
    if (!sameIp) throw invalid(`"${cidr}" is not a network address (host bits set; network is ${sn})`);
    return sn;
  }

  /**
   * An IPv4 subnet from dotted quad `addr` and its number, in plain numbers:
   * every lease key goes through here (all of them at a large node's start), and the
   * general path's BigInt arithmetic allocates several numbers per call.
   */
  private static ofIPv4(addr: string, value: number, prefixLength: number): Subnet {
    const base = maskIPv4(value, prefixLength);
    // parseIPv4 admits no leading zeros, so an address without host bits is already canonical.
    return new Subnet(4, base === value ? addr : formatIPv4(base), prefixLength, BigInt(base));
  }

  /** An IPv6 subnet from the address's eight groups, masked in place: one BigInt conversion, no BigInt arithmetic. */
  private static ofIPv6(groups: number[], prefixLength: number): Subnet {
    for (let i = 0; i < 8; i++) {
      const keep = Math.min(16, Math.max(0, prefixLength - i * 16));
      if (keep < 16) groups[i] = keep === 0 ? 0 : (groups[i] as number) & (0xffff << (16 - keep)) & 0xffff;
    }
    return new Subnet(6, formatIPv6(groups), prefixLength, groupsValue(groups));
  }

  /** Builds a subnet from a numeric network address; host bits are masked. */
  static of(family: 4 | 6, address: bigint, prefixLength: number): Subnet {
    const bits = family === 4 ? 32 : 128;
    if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > bits) {
      throw invalid(`invalid prefix length ${prefixLength} for IPv${family}`);
    }
    const size = 1n << BigInt(bits - prefixLength);
    const base = address - (address % size); // the network address: host part removed
    return new Subnet(family, ipString(family, base), prefixLength, base);
  }

  get bits(): number {
    return this.family === 4 ? 32 : 128;
  }

  /** Number of addresses in the subnet, as a bigint (IPv6 sizes overflow numbers). */
  get size(): bigint {
    return 1n << BigInt(this.bits - this.prefixLength);
  }

  /** Network address as a number, for ordering and stepping. */
  get value(): bigint {
    return this.base;
  }

  /** Last address of the subnet as a number. */
  get lastValue(): bigint {
    return this.base + this.size - 1n;
  }

  /** `10.244.3.0/24` */
  toString(): string {
    return `${this.ip}/${this.prefixLength}`;
  }

  /** The address at `offset` inside the subnet (`1` gives the gateway, `.1`). */
  addressAt(offset: number | bigint): string {
    return ipString(this.family, this.base + BigInt(offset));
  }

  /** The subnet of the same length that follows this one. */
  next(): Subnet {
    return Subnet.of(this.family, this.base + this.size, this.prefixLength);
  }

  equals(other: Subnet | null | undefined): boolean {
    return !!other && other.family === this.family && other.base === this.base && other.prefixLength === this.prefixLength;
  }

  /** True when `other` (a subnet or an address string) lies entirely inside this subnet. */
  contains(other: Subnet | string): boolean {
    if (typeof other === 'string') {
      // IPv4 in plain numbers: a full pass asks this for every route the kernel dumps.
      if (this.family === 4) {
        const v4 = parseIPv4(other);
        return v4 !== null && maskIPv4(v4, this.prefixLength) === Number(this.base);
      }
      const v = ipValue(other);
      return v !== null && v.family === this.family && v.value >= this.base && v.value <= this.lastValue;
    }
    return other.family === this.family && other.base >= this.base && other.lastValue <= this.lastValue;
  }

  overlaps(other: Subnet): boolean {
    return other.family === this.family && other.base <= this.lastValue && this.base <= other.lastValue;
  }
}

/** Parses an IP address string into family and number, or null when it is not one. */
export function ipValue(ip: string): { family: 4 | 6; value: bigint } | null {
  if (typeof ip !== 'string' || ip.includes('/') || ip.includes('%')) return null;
  const v4 = parseIPv4(ip);
  if (v4 !== null) return { family: 4, value: BigInt(v4) };
  const groups = ip.includes(':') ? parseIPv6(ip) : null;
  return groups ? { family: 6, value: groupsValue(groups) } : null;
}

/** Canonical string of an address number: dotted quad, or RFC 5952 compressed IPv6. */
export function ipString(family: 4 | 6, value: bigint): string {
  return family === 4 ? formatIPv4(Number(value)) : formatIPv6(valueGroups(value));
}

/**
 * Dotted-quad `ip` as an unsigned 32-bit number, read digit by digit (no
 * split, no allocation: lease keys and netlink messages go through here by
 * the thousand), or null when it is not four decimal octets. Leading zeros
 * ("010") are refused, as Node's isIPv4 does.
 */
export function parseIPv4(ip: string): number | null {
  let result = 0;
  let octets = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= ip.length; i++) {
    const c = i < ip.length ? ip.charCodeAt(i) : 0x2e; // the end closes the last octet like a '.'
    if (c === 0x2e) {
      if (digits === 0 || value > 255 || octets === 4 || (digits > 1 && ip.charCodeAt(i - digits) === 0x30)) return null;
      result = result * 256 + value;
      octets++;
      value = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39 && digits < 3) {
      value = value * 10 + (c - 0x30);
      digits++;
    } else {
      return null;
    }
  }
  return octets === 4 ? result : null;
}

/** The dotted quad of a 32-bit number. */
export function formatIPv4(value: number): string {
  return `${Math.floor(value / 0x1000000)}.${Math.floor(value / 0x10000) % 256}.${Math.floor(value / 0x100) % 256}.${value % 256}`;
}

/** The network address of IPv4 number `value` in a /`prefixLength`: its host bits cleared. */
export function maskIPv4(value: number, prefixLength: number): number {
  // 32-bit operations, unsigned again by >>> 0; a shift by 32 would be a shift by 0, hence /0 apart.
  return prefixLength === 0 ? 0 : (value & (0xffffffff << (32 - prefixLength))) >>> 0;
}

/**
 * The IPv4 address as its dotted quad, or null when the string is anything
 * else. parseIPv4 refuses leading zeros, so a valid dotted quad is canonical.
 */
export function canonicalIPv4(ip: string): string | null {
  return typeof ip === 'string' && parseIPv4(ip) !== null ? ip : null;
}

/** Canonical form of an IPv6 address string, or null. */
export function canonicalIPv6(ip: string): string | null {
  if (typeof ip !== 'string' || !ip.includes(':')) return null;
  const groups = parseIPv6(ip);
  return groups ? formatIPv6(groups) : null;
}

/**
 * The eight 16-bit groups of IPv6 text, or null when it is none: one to four
 * hex digits a group (either case), at most one `::` standing for one or more
 * zero groups, and optionally a dotted-quad tail for the last two groups
 * (`::ffff:198.18.0.1`). No zone (`%eth0`), no prefix.
 */
export function parseIPv6(ip: string): number[] | null {
  // One pass over the characters, no splitting: every dual-stack lease key and value is read here at start-up.
  const n = typeof ip === 'string' ? ip.length : 0;
  if (n < 2 || n > 45) return null;
  const groups: number[] = [0, 0, 0, 0, 0, 0, 0, 0];
  let count = 0;
  let gapAt = -1;
  let i = 0;
  if (ip.charCodeAt(0) === 0x3a) {
    if (ip.charCodeAt(1) !== 0x3a) return null;
    gapAt = 0;
    i = 2;
  }
  while (i < n) {
    const start = i;
    let value = 0;
    while (i < n) {
      const d = hexDigit(ip.charCodeAt(i));
      if (d < 0) break;
      value = value * 16 + d;
      i++;
    }
    if (i < n && ip.charCodeAt(i) === 0x2e) {
      // A dotted-quad tail stands for the last two groups.
      const v4 = count <= 6 ? parseIPv4(ip.slice(start)) : null;
      if (v4 === null) return null;
      groups[count++] = Math.floor(v4 / 0x10000);
      groups[count++] = v4 % 0x10000;
      break;
    }
    const digits = i - start;
    if (digits === 0 || digits > 4 || count === 8) return null;
    groups[count++] = value;
    if (i === n) break;
    if (ip.charCodeAt(i) !== 0x3a) return null;
    i++;
    if (i === n) return null; // a trailing single colon
    if (ip.charCodeAt(i) === 0x3a) {
      if (gapAt >= 0) return null;
      gapAt = count;
      i++;
    }
  }
  if (gapAt < 0) return count === 8 ? groups : null;
  if (count > 7) return null;
  // Move the groups after `::` to the end; the gap between them is zeros.
  const after = count - gapAt;
  for (let k = after - 1; k >= 0; k--) {
    groups[8 - after + k] = groups[gapAt + k] as number;
    groups[gapAt + k] = 0;
  }
  return groups;
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

/**
 * RFC 5952 text of eight 16-bit groups: lower-case hex without leading zeros,
 * the longest run of two or more zero groups (the first of equal ones) as
 * `::`, and no dotted-quad tail.
 */
export function formatIPv6(groups: ArrayLike<number>): string {
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      out += '::';
      i += bestLen - 1;
      continue;
    }
    if (out !== '' && !out.endsWith(':')) out += ':';
    out += (groups[i] as number).toString(16);
  }
  return out;
}

function groupsValue(groups: readonly number[]): bigint {
  let hi = 0n;
  for (let i = 0; i < 8; i++) hi = (hi << 16n) | BigInt(groups[i] as number);
  return hi;
}

function valueGroups(value: bigint): number[] {
  const groups = new Array<number>(8);
  let v = value;
  for (let i = 7; i >= 0; i--) {
    groups[i] = Number(v & 0xffffn);
    v >>= 16n;
  }
  return groups;
}

function invalid(message: string): WeftError {
  return new WeftError('WEFT_ERR_ADDRESS_INVALID', message);
}
