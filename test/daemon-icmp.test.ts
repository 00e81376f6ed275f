import { expect } from 'chai';
import { EventEmitter } from 'node:events';
import {
  ECHO_PAYLOAD,
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  IcmpProbeClient,
  PendingEchoes,
  buildEcho6Request,
  buildEchoRequest,
  echoReplyFilter,
  internetChecksum,
  openIcmpClient,
  parseEcho6Reply,
  parseEchoReply,
  type EchoReply,
  type RawSocket,
} from '../daemon/icmp.js';

/** An IPv4 packet around `icmp`, as a raw socket hands it over (header included). */
function ipv4(icmp: Buffer, source: string, options: { protocol?: number; flagsFragment?: number; optionWords?: number; padding?: number } = {}): Buffer {
  const ihl = 5 + (options.optionWords ?? 0);
  const header = Buffer.alloc(ihl * 4);
  header[0] = 0x40 | ihl;
  header.writeUInt16BE(header.length + icmp.length, 2);
  header.writeUInt16BE(options.flagsFragment ?? 0x4000, 6); // DF
  header[8] = 64;
  header[9] = options.protocol ?? 1;
  source.split('.').forEach((b, i) => (header[12 + i] = Number(b)));
  [10, 0, 0, 9].forEach((b, i) => (header[16 + i] = b));
  header.writeUInt16BE(internetChecksum(header), 10);
  return Buffer.concat([header, icmp, Buffer.alloc(options.padding ?? 0)]);
}

/** The reply a kernel makes of `request`: type 0, same id, sequence and payload, checksum recomputed. */
function replyTo(request: Buffer): Buffer {
  const reply = Buffer.from(request);
  reply[0] = 0;
  reply.writeUInt16BE(0, 2);
  reply.writeUInt16BE(internetChecksum(reply), 2);
  return reply;
}

describe('ICMP echo (daemon/icmp.ts)', () => {
  describe('internet checksum (RFC 1071)', () => {
    it('matches the RFC\'s worked example and folds the carries', () => {
      // RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2 (with carries folded), so the checksum is 220d.
      expect(internetChecksum(Buffer.from('0001f203f4f5f6f7', 'hex'))).to.equal(0x220d);
      expect(internetChecksum(Buffer.from('ffffffff', 'hex'))).to.equal(0x0000);
      expect(internetChecksum(Buffer.alloc(0))).to.equal(0xffff);
    });

    it('pads an odd length with a zero byte', () => {
      expect(internetChecksum(Buffer.from('0001f2', 'hex'))).to.equal(internetChecksum(Buffer.from('0001f200', 'hex')));
    });

    it('is zero over data that carries its own checksum, at every length', () => {
      for (let n = 0; n < 40; n++) {
        const packet = buildEchoRequest(0xbeef, n, Buffer.alloc(n, n * 7));
        expect(internetChecksum(packet), `payload of ${n} bytes`).to.equal(0);
      }
    });
  });

  describe('echo request', () => {
    it('is type 8 code 0 with the identifier and sequence in network order and the payload after the header', () => {
      const packet = buildEchoRequest(0x1234, 0xabcd, Buffer.from('hi'));
      expect(packet.toString('hex')).to.equal('0800' + internetChecksum(Buffer.from('08000000' + '1234abcd' + '6869', 'hex')).toString(16).padStart(4, '0') + '1234abcd6869');
    });

    it('carries weft\'s payload by default', () => {
      expect(buildEchoRequest(1, 2).subarray(8).equals(ECHO_PAYLOAD)).to.equal(true);
    });
  });

  describe('echo reply from a raw socket', () => {
    const request = buildEchoRequest(0x4242, 7);

    it('parses source, identifier, sequence and payload out of the IP packet', () => {
      expect(parseEchoReply(ipv4(replyTo(request), '198.18.0.2'))).to.deep.equal({ source: '198.18.0.2', id: 0x4242, seq: 7, payload: ECHO_PAYLOAD });
    });

    it('skips IP options (IHL over 5) and ignores bytes past the IP total length', () => {
      const reply = parseEchoReply(ipv4(replyTo(request), '10.244.3.0', { optionWords: 2, padding: 6 }));
      expect(reply).to.deep.include({ source: '10.244.3.0', id: 0x4242, seq: 7 });
      expect(reply!.payload.equals(ECHO_PAYLOAD)).to.equal(true);
    });

    it('is null for what is not a whole, intact echo reply', () => {
      expect(parseEchoReply(ipv4(request, '198.18.0.2')), 'an echo request (a peer probing this node)').to.equal(null);
      const unreachable = Buffer.from(replyTo(request));
      unreachable[0] = 3;
      expect(parseEchoReply(ipv4(unreachable, '198.18.0.2')), 'destination unreachable').to.equal(null);
      const corrupt = Buffer.from(replyTo(request));
      corrupt[9] ^= 0xff;
      expect(parseEchoReply(ipv4(corrupt, '198.18.0.2')), 'a bad checksum').to.equal(null);
      expect(parseEchoReply(ipv4(replyTo(request), '198.18.0.2', { protocol: 17 })), 'not ICMP').to.equal(null);
      expect(parseEchoReply(ipv4(replyTo(request), '198.18.0.2', { flagsFragment: 0x2000 })), 'more fragments').to.equal(null);
      expect(parseEchoReply(ipv4(replyTo(request), '198.18.0.2', { flagsFragment: 0x0010 })), 'a later fragment').to.equal(null);
      const v6 = ipv4(replyTo(request), '198.18.0.2');
      v6[0] = 0x65;
      expect(parseEchoReply(v6), 'not IPv4').to.equal(null);
      expect(parseEchoReply(Buffer.alloc(0))).to.equal(null);
    });

    it('is null, never throws, for the packet cut at every offset', () => {
      const whole = ipv4(replyTo(request), '198.18.0.2');
      for (let n = 0; n < whole.length; n++) {
        const cut = Buffer.from(whole.subarray(0, n));
        expect(parseEchoReply(cut), `first ${n} bytes`).to.equal(null);
      }
    });
  });

  describe('matching replies to echoes in flight', () => {
    const reply = (r: Partial<EchoReply>): EchoReply => ({ source: '198.18.0.2', id: 0x4242, seq: 1, payload: ECHO_PAYLOAD, ...r });

    it('takes a reply with our identifier, a sequence in flight, its target as source and our payload, once', () => {
      const echoes = new PendingEchoes<string>(0x4242);
      const seq = echoes.add('198.18.0.2', 'underlay');
      expect(echoes.take(reply({ seq, id: 0x4243 })), 'another identifier').to.equal(undefined);
      expect(echoes.take(reply({ seq: seq + 1 })), 'a sequence not in flight').to.equal(undefined);
      expect(echoes.take(reply({ seq, source: '198.18.0.3' })), 'another source').to.equal(undefined);
      expect(echoes.take(reply({ seq, payload: Buffer.from('ping') })), 'another payload').to.equal(undefined);
      expect(echoes.take(reply({ seq }))).to.equal('underlay');
      expect(echoes.take(reply({ seq })), 'a duplicate').to.equal(undefined);
      expect(echoes.size).to.equal(0);
    });

    it('tells the two paths to one peer apart by sequence', () => {
      const echoes = new PendingEchoes<string>(7);
      const under = echoes.add('198.18.0.2', 'underlay');
      const over = echoes.add('10.244.3.0', 'overlay');
      expect(echoes.take(reply({ id: 7, seq: over, source: '10.244.3.0' }))).to.equal('overlay');
      expect(echoes.take(reply({ id: 7, seq: under, source: '198.18.0.2' }))).to.equal('underlay');
    });

    it('wraps the 16-bit sequence and skips numbers still in flight', () => {
      const echoes = new PendingEchoes<number>(1);
      const first = echoes.add('198.18.0.2', 0);
      expect(first).to.equal(1);
      let last = first;
      for (let i = 1; i < 0xffff; i++) {
        last = echoes.add('198.18.0.2', i);
        if (i % 2 === 0) echoes.delete(last);
      }
      expect(last).to.equal(0xffff);
      // 0 is free, 1 and 2 are in flight, 3 was deleted.
      expect(echoes.add('198.18.0.2', -1)).to.equal(0);
      expect(echoes.add('198.18.0.2', -2)).to.equal(3);
    });
  });

  describe('opening the raw socket', () => {
    it('says so when the addon does not load', () => {
      const opened = openIcmpClient(() => {
        throw new Error("Cannot find module 'raw-socket'\nRequire stack: ...");
      });
      expect(opened).to.deep.equal({ reason: "the raw-socket addon does not load (Cannot find module 'raw-socket')" });
    });

    it('names the missing capability when the kernel refuses a raw socket', () => {
      const opened = openIcmpClient(() => ({
        createSocket: () => {
          throw new Error('Operation not permitted');
        },
      }));
      expect(opened).to.deep.equal({ reason: 'raw sockets not allowed (no CAP_NET_RAW)' });
    });
  });

  describe('ICMPv6 (RFC 4443)', () => {
    /** The reply a kernel makes of an ICMPv6 `request`: type 129, the rest copied (the kernel fills the checksum). */
    const reply6 = (request: Buffer): Buffer => {
      const reply = Buffer.from(request);
      reply[0] = ICMPV6_ECHO_REPLY;
      reply.writeUInt16BE(0x1234, 2);
      return reply;
    };

    it('an echo request is type 128 code 0 with a zero checksum (the kernel computes it) and weft\'s payload', () => {
      const packet = buildEcho6Request(0x1234, 0xabcd);
      expect(packet.subarray(0, 8).toString('hex')).to.equal('800000001234abcd');
      expect(ICMPV6_ECHO_REQUEST).to.equal(128);
      expect(packet.subarray(8).equals(ECHO_PAYLOAD)).to.equal(true);
    });

    it('a reply is read from the ICMPv6 message alone, its source from recvfrom in canonical form', () => {
      const reply = parseEcho6Reply(reply6(buildEcho6Request(0x4242, 9)), 'FD00:10:244:3:0:0:0:0');
      expect(reply).to.deep.equal({ source: 'fd00:10:244:3::', id: 0x4242, seq: 9, payload: ECHO_PAYLOAD });
    });

    it('is null for anything but an echo reply with a valid IPv6 source, and for every cut', () => {
      const request = buildEcho6Request(0x4242, 9);
      expect(parseEcho6Reply(request, '2001:2::2'), 'an echo request').to.equal(null);
      const coded = reply6(request);
      coded[1] = 1;
      expect(parseEcho6Reply(coded, '2001:2::2'), 'code not 0').to.equal(null);
      expect(parseEcho6Reply(reply6(request), '198.18.0.2'), 'an IPv4 source').to.equal(null);
      const whole = reply6(request);
      for (let n = 0; n < 8; n++) expect(parseEcho6Reply(Buffer.from(whole.subarray(0, n)), '2001:2::2'), `first ${n} bytes`).to.equal(null);
    });

    it('the ICMPv6 filter blocks every type but 129 (a set bit blocks), 256 bits in host order', () => {
      const { level, option, value } = echoReplyFilter(6);
      expect([level, option, value.length]).to.deep.equal([58, 1, 32]); // IPPROTO_ICMPV6, ICMPV6_FILTER
      const le = value.readUInt32LE(16) === 0xfffffffd || value.readUInt32BE(16) === 0xfffffffd;
      expect(le, 'word 4 passes bit 1 (type 129) only').to.equal(true);
      for (let w = 0; w < 8; w++) if (w !== 4) expect(value.readUInt32LE(w * 4), `word ${w}`).to.equal(0xffffffff);
      const v4 = echoReplyFilter(4);
      expect([v4.level, v4.option, v4.value.length]).to.deep.equal([255, 1, 4]);
    });

    it('openIcmpClient(…, 6) asks raw-socket for an IPv6 socket of protocol 58, and says when there is none', () => {
      const asked: object[] = [];
      const opened = openIcmpClient(() => ({
        createSocket: (options) => {
          asked.push(options);
          return { on: () => undefined, setOption: () => undefined, send: () => undefined, close: () => undefined } as unknown as RawSocket;
        },
      }), 6);
      expect(asked).to.deep.equal([{ protocol: 58, addressFamily: 2 }]);
      expect(opened).to.have.property('client').with.property('family', 6);
      const refused = openIcmpClient(() => ({
        createSocket: () => {
          throw new Error('Address family not supported by protocol');
        },
      }), 6);
      expect(refused).to.deep.equal({ reason: 'no raw ICMPv6 socket (Address family not supported by protocol)' });
    });
  });

  describe('IcmpProbeClient over a stand-in socket', () => {
    /** Answers each request from `answers(ip)` (null: silent), as a kernel would, after a tick. */
    class FakeRawSocket extends EventEmitter {
      readonly sent: { ip: string; packet: Buffer }[] = [];
      readonly options: { level: number; option: number; value: Buffer }[] = [];
      closed = false;
      constructor(private readonly answers: (ip: string) => string | null) {
        super();
      }
      send(buffer: Buffer, offset: number, length: number, ip: string, before: () => void, after: (err: Error | null, bytes: number) => void): this {
        const packet = Buffer.from(buffer.subarray(offset, offset + length));
        this.sent.push({ ip, packet });
        before();
        after(null, length);
        const source = this.answers(ip);
        if (source !== null) setTimeout(() => this.emit('message', ipv4(replyTo(packet), source), source), 1);
        return this;
      }
      setOption(level: number, option: number, value: Buffer): void {
        this.options.push({ level, option, value: Buffer.from(value) });
      }
      close(): this {
        this.closed = true;
        return this;
      }
    }

    it('sets the ICMP filter so that only echo replies reach the socket', () => {
      const socket = new FakeRawSocket(() => null);
      new IcmpProbeClient(socket as unknown as RawSocket);
      expect(socket.options).to.have.length(1);
      const [{ level, option, value }] = socket.options as [{ level: number; option: number; value: Buffer }];
      expect([level, option]).to.deep.equal([255, 1]); // SOL_RAW, ICMP_FILTER
      const mask = value.readUInt32LE(0) === 0xfffffffe || value.readUInt32BE(0) === 0xfffffffe;
      expect(mask, 'every type filtered but 0 (echo reply)').to.equal(true);
    });

    it('answers with the RTT when the target replies, and times out when only another address does', async () => {
      const socket = new FakeRawSocket((ip) => (ip === '10.244.9.0' ? '10.244.9.1' : ip));
      const client = new IcmpProbeClient(socket as unknown as RawSocket);
      const [answered, impostor] = await Promise.all([client.echo('198.18.0.2', 1000), client.echo('10.244.9.0', 100)]);
      expect(answered.ok).to.equal(true);
      expect(answered.rttMs).to.be.a('number').and.to.be.below(1000);
      expect(answered.mtu).to.equal(null);
      expect(impostor).to.deep.equal({ ok: false, rttMs: null, mtu: null });
      const ids = new Set(socket.sent.map((s) => s.packet.readUInt16BE(4)));
      expect(ids.size, 'one identifier per client').to.equal(1);
      expect(socket.sent.map((s) => s.packet[0])).to.deep.equal([8, 8]);
    });

    it('over IPv6: sends type 128 and takes the reply by its recvfrom source, whatever the spelling of the target', async () => {
      const sent: { ip: string; packet: Buffer }[] = [];
      const socket = new EventEmitter() as EventEmitter & RawSocket;
      const options: Buffer[] = [];
      Object.assign(socket, {
        setOption: (_l: number, _o: number, value: Buffer) => void options.push(Buffer.from(value)),
        close: () => socket,
        send(buffer: Buffer, offset: number, length: number, ip: string, before: () => void, after: (err: Error | null, bytes: number) => void) {
          const packet = Buffer.from(buffer.subarray(offset, offset + length));
          sent.push({ ip, packet });
          before();
          after(null, length);
          const reply = Buffer.from(packet);
          reply[0] = 129;
          // The kernel's address of the answer: canonical, as recvfrom gives it; nothing answers for 2001:2::9.
          if (ip !== '2001:2::9') setTimeout(() => socket.emit('message', reply, 'fd00:10:244:3::'), 1);
          return socket;
        },
      });
      const client = new IcmpProbeClient(socket, 6);
      expect(options).to.have.length(1);
      expect(options[0]!.length).to.equal(32);
      const [answered, silent] = await Promise.all([client.echo('fd00:10:244:3:0::', 1000), client.echo('2001:2::9', 100)]);
      expect(answered.ok).to.equal(true);
      expect(silent).to.deep.equal({ ok: false, rttMs: null, mtu: null });
      expect(sent.map((s) => s.packet[0])).to.deep.equal([128, 128]);
      await client.close();
    });

    it('close() lets the echoes in flight finish, then refuses new ones with WEFT_ERR_INVALID_STATE and closes the socket', async () => {
      const socket = new FakeRawSocket((ip) => ip);
      const client = new IcmpProbeClient(socket as unknown as RawSocket);
      const answered = client.echo('198.18.0.2', 1000);
      const closing = client.close();
      const refused = await client.echo('198.18.0.2', 1000).then(
        () => expect.fail('an echo after close() should be refused'),
        (e: unknown) => e,
      );
      expect(refused).to.have.property('code', 'WEFT_ERR_INVALID_STATE');
      expect(socket.closed).to.equal(false);
      expect((await answered).ok).to.equal(true);
      await closing;
      expect(socket.closed).to.equal(true);
    });
  });
});
