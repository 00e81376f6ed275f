/** CNI error objects (cni/errors.ts): every WEFT_ERR_* code weft-cni throws has its CNI code; no stack trace. */
import { expect } from 'chai';
import { WeftError, type WeftErrorCode } from '../common/errors.js';
import { CNI_CODE, CniError, cniCode, errorResult } from '../cni/errors.js';

describe('cni errors: the spec\'s error object', () => {
  it('maps each code weft-cni throws to the spec\'s code', () => {
    const table: Array<[WeftErrorCode, number]> = [
      ['WEFT_ERR_CNI_VERSION', 1],
      ['WEFT_ERR_CNI_ENV', 4],
      ['WEFT_ERR_CNI_IO', 5],
      ['WEFT_ERR_CNI_DECODE', 6],
      ['WEFT_ERR_CONFIG_INVALID', 7],
      ['WEFT_ERR_ADDRESS_INVALID', 7],
      ['WEFT_ERR_SUBNET_FILE_INVALID', 7],
      ['WEFT_ERR_SUBNET_FILE_MISSING', 11],
      ['WEFT_ERR_CNI_DELEGATE', 100],
      ['WEFT_ERR_CNI_CHECK', 101],
      ['WEFT_ERR_KERNEL', 999],
    ];
    for (const [code, cni] of table) expect(cniCode(new WeftError(code, 'x'), 'ADD'), code).to.equal(cni);
  });

  it('STATUS says "not available" (50) when the subnet file or the delegate is not there', () => {
    expect(cniCode(new WeftError('WEFT_ERR_SUBNET_FILE_MISSING', 'x'), 'STATUS')).to.equal(CNI_CODE.NOT_AVAILABLE);
    expect(cniCode(new WeftError('WEFT_ERR_SUBNET_FILE_INVALID', 'x'), 'STATUS')).to.equal(50);
    expect(cniCode(new CniError('WEFT_ERR_CNI_DELEGATE', 'not found'), 'STATUS')).to.equal(50);
    // A broken config is still a broken config.
    expect(cniCode(new WeftError('WEFT_ERR_CONFIG_INVALID', 'x'), 'STATUS')).to.equal(7);
  });

  it('a delegate\'s own code, msg and details are passed on', () => {
    const err = new CniError('WEFT_ERR_CNI_DELEGATE', 'delegate bridge ADD failed: failed to set bridge addr', { details: 'cni0 has 10.244.6.1/24', cniCode: 999 });
    expect(errorResult(err, 'ADD', '1.0.0')).to.deep.equal({ cniVersion: '1.0.0', code: 999, msg: 'delegate bridge ADD failed: failed to set bridge addr', details: 'cni0 has 10.244.6.1/24' });
    // In STATUS too: the delegate said what it is.
    expect(cniCode(new CniError('WEFT_ERR_CNI_DELEGATE', 'x', { cniCode: 51 }), 'STATUS')).to.equal(51);
  });

  it('details: the longer explanation, else the WEFT_ERR_* code', () => {
    const err = new WeftError('WEFT_ERR_SUBNET_FILE_MISSING', 'subnet file /run/flannel/subnet.env does not exist: weftd writes it once it holds a lease');
    expect(errorResult(err, 'ADD', '0.3.1')).to.deep.equal({
      cniVersion: '0.3.1',
      code: 11,
      msg: 'subnet file /run/flannel/subnet.env does not exist: weftd writes it once it holds a lease',
      details: 'WEFT_ERR_SUBNET_FILE_MISSING',
    });
  });

  it('anything else is an internal error (999): its message kept, no stack trace', () => {
    const r = errorResult(new TypeError('x is not a function'), 'ADD', '1.1.0');
    expect(r).to.deep.equal({ cniVersion: '1.1.0', code: 999, msg: 'internal error in weft-cni: x is not a function', details: 'not a failure weft-cni knows: please report it' });
    expect(JSON.stringify(errorResult('boom', 'DEL', '1.1.0'))).to.not.match(/\n\s+at /);
    expect(errorResult('boom', 'DEL', '1.1.0').msg).to.equal('internal error in weft-cni: boom');
  });

  it('a CniError is a WeftError with a stable code', () => {
    const err = new CniError('WEFT_ERR_CNI_CHECK', 'x', { cause: new Error('y') });
    expect(err).to.be.instanceOf(WeftError);
    expect(err.code).to.equal('WEFT_ERR_CNI_CHECK');
    expect((err.cause as Error).message).to.equal('y');
  });
});
