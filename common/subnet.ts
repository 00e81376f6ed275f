import { Address6 } from 'ip-address';
import { WeftError } from './errors.js';

/**
 * An IPv4 or IPv6 network (address + prefix length), always held in masked
 * form. IPv6 parsing and formatting go through ip-address. IPv4 is the hot
 * path (every lease key and value at start-up and on every watch event), so
 * it is read digit by digit (parseIPv4) and converted with plain arithmetic,
 * far cheaper than building ip-address objects.
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
    const v6 = s.includes(':') ? tryAddress6(s) : null;
    if (v6) {
      const start = v6.startAddress();
      return new Subnet(6, start.correctForm(), v6.subnetMask, start.bigInt());
    }
    throw invalid(`invalid CIDR "${s}"`);
  }

  /** Like parse(), but rejects a CIDR with host bits set instead of masking them. */
  static parseCanonical(cidr: string): Subnet {
    const sn = Subnet.parse(cidr);
    const given = String(cidr).split('/')[0] ?? '';
    const sameIp = sn.family === 4 ? given === sn.ip : new Address6(given).bigInt() === sn.base;
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
  const v6 = ip.includes(':') ? tryAddress6(ip) : null;
  return v6 ? { family: 6, value: v6.bigInt() } : null;
}

/** Canonical string of an address number: dotted quad, or RFC 5952 compressed IPv6. */
export function ipString(family: 4 | 6, value: bigint): string {
  return family === 4 ? formatIPv4(Number(value)) : Address6.fromBigInt(value).correctForm();
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
  if (typeof ip !== 'string' || ip.includes('/') || ip.includes('%') || !ip.includes(':')) return null;
  return tryAddress6(ip)?.correctForm() ?? null;
}

function tryAddress6(s: string): Address6 | null {
  try {
    return new Address6(s);
  } catch {
    return null;
  }
}

function invalid(message: string): WeftError {
  return new WeftError('WEFT_ERR_ADDRESS_INVALID', message);
}
