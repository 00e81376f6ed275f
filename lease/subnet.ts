import { Address4, Address6 } from 'ip-address';

/**
 * An IPv4 or IPv6 network (address + prefix length), always held in masked
 * form. All CIDR math goes through ip-address; weft does no bit twiddling.
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
   * net.ParseCIDR (`10.1.2.3/16` -> `10.1.0.0/16`). Throws on anything else.
   */
  static parse(cidr: string): Subnet {
    const s = String(cidr);
    if (!s.includes('/')) throw new Error(`invalid CIDR "${s}": missing /prefix-length`);
    if (s.includes('%')) throw new Error(`invalid CIDR "${s}": zone not allowed`);
    const [addr, len] = s.split('/');
    if (!/^\d{1,3}$/.test(len ?? '') || String(Number(len)) !== len) {
      throw new Error(`invalid CIDR "${s}": bad prefix length`);
    }
    if (Address4.isValid(s) && Address4.isValid(addr ?? '')) {
      const a = new Address4(s);
      return Subnet.of(4, a.startAddress().bigInt(), a.subnetMask);
    }
    if (s.includes(':') && Address6.isValid(s)) {
      const a = new Address6(s);
      return Subnet.of(6, a.startAddress().bigInt(), a.subnetMask);
    }
    throw new Error(`invalid CIDR "${s}"`);
  }

  /** Like parse(), but rejects a CIDR with host bits set instead of masking them. */
  static parseCanonical(cidr: string): Subnet {
    const sn = Subnet.parse(cidr);
    const given = String(cidr).split('/')[0] ?? '';
    const sameIp = sn.family === 4 ? given === sn.ip : new Address6(given).bigInt() === sn.base;
    if (!sameIp) throw new Error(`"${cidr}" is not a network address (host bits set; network is ${sn})`);
    return sn;
  }

  /** Builds a subnet from a numeric network address; host bits are masked. */
  static of(family: 4 | 6, address: bigint, prefixLength: number): Subnet {
    const bits = family === 4 ? 32 : 128;
    if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > bits) {
      throw new Error(`invalid prefix length ${prefixLength} for IPv${family}`);
    }
    const cidr = `${ipString(family, address)}/${prefixLength}`;
    const start = family === 4 ? new Address4(cidr).startAddress() : new Address6(cidr).startAddress();
    return new Subnet(family, family === 4 ? start.correctForm() : start.correctForm(), prefixLength, start.bigInt());
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
  if (Address4.isValid(ip)) return { family: 4, value: new Address4(ip).bigInt() };
  if (ip.includes(':') && Address6.isValid(ip)) return { family: 6, value: new Address6(ip).bigInt() };
  return null;
}

/** Canonical string of an address number: dotted quad, or RFC 5952 compressed IPv6. */
export function ipString(family: 4 | 6, value: bigint): string {
  return family === 4 ? Address4.fromBigInt(value).correctForm() : Address6.fromBigInt(value).correctForm();
}

/** Canonical form of an IPv4 address string, or null when the string is not a plain IPv4 address. */
export function canonicalIPv4(ip: string): string | null {
  const v = ipValue(ip);
  return v && v.family === 4 ? ipString(4, v.value) : null;
}

/** Canonical form of an IPv6 address string, or null. */
export function canonicalIPv6(ip: string): string | null {
  const v = ipValue(ip);
  return v && v.family === 6 ? ipString(6, v.value) : null;
}
