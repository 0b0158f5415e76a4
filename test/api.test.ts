/**
 * The UFFDIO_API handshake and opening rules (uffd-unit-tests' api checks, plus ours).
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import { Userfaultfd, UffdError, UnsupportedError, constants } from '../lib/index';
import { native } from '../lib/core/binding';
import { openDescriptor } from '../lib/core/userfaultfd';
import { FEATURES } from '../lib/core/constants';
import { pageSize } from '../lib/core/sysinfo';
import { runChild } from './helpers/child';
import { kernel, kernelHasUserModeOnly, rawUffdFd, skipIf } from './helpers/memtypes';

const UFFD_API = 0xaan;
const page = pageSize();

// uffd-unit-tests runs its API rules twice, test_uffd_api(use_dev): on a descriptor from the
// syscall and on one from /dev/userfaultfd (Linux >= 6.1). So do these.
const WAYS = [
  { via: 'syscall', label: '' },
  { via: 'device', label: ' (a /dev/userfaultfd descriptor)' },
] as const;

for (const way of WAYS) {
  describe(`api: the handshake rules${way.label}`, () => {
    before(function () {
      if (way.via === 'device') skipIf(this, kernel().open.device.ok ? undefined : `/dev/userfaultfd cannot be opened here: ${kernel().open.device.error}`);
    });
    const freshFd = (): number => (way.via === 'syscall' ? rawUffdFd() : openDescriptor('device', 'prefer').fd);

    it('a bad api number is EINVAL', () => {
      const fd = freshFd();
      try {
        expect(native.rawApi(fd, 0xabn, 0n)).to.equal(22);
      } finally {
        native.closeFd(fd);
      }
    });

    it('feature bit 63 (unknown to every kernel) is EINVAL', () => {
      const fd = freshFd();
      try {
        expect(native.rawApi(fd, UFFD_API, 1n << 63n)).to.equal(22);
      } finally {
        native.closeFd(fd);
      }
    });

    it('a second UFFDIO_API on the same fd is EINVAL, even after asking for no features', () => {
      const fd = freshFd();
      try {
        expect(native.rawApi(fd, UFFD_API, 0n)).to.equal(0);
        expect(native.rawApi(fd, UFFD_API, 0n)).to.equal(22);
      } finally {
        native.closeFd(fd);
      }
    });

    it('apiHandshake throws a UffdError shaped like a Node system error', () => {
      const fd = freshFd();
      try {
        native.apiHandshake(fd, 0n);
        expect(() => native.apiHandshake(fd, 0n))
          .to.throw(UffdError)
          .that.deep.includes({ code: 'EINVAL', errno: -22, syscall: 'ioctl', ioctl: 'UFFDIO_API' });
      } finally {
        native.closeFd(fd);
      }
    });

    if (way.via !== 'syscall') return;

    it('an errno libuv has no name for still gets its name as code', () => {
      expect(new UffdError({ errno: -10, syscall: 'waitpid' }).code).to.equal('ECHILD');
    });

    it('the descriptor reports API, REGISTER and UNREGISTER', () => {
      using uffd = Userfaultfd.open();
      expect(uffd.ioctls).to.have.members(['API', 'REGISTER', 'UNREGISTER']);
    });
  });
}

describe('api: opening', () => {
  it('negotiates exactly the features asked for', () => {
    using uffd = Userfaultfd.open({ features: ['THREAD_ID', 'EVENT_REMOVE'] });
    expect(uffd.features.THREAD_ID).to.equal(true);
    expect(uffd.features.EVENT_REMOVE).to.equal(true);
    expect(uffd.features.EVENT_UNMAP).to.equal(false);
    expect(uffd.featureBits & (1n << BigInt(FEATURES.THREAD_ID.bit))).to.not.equal(0n);
  });

  it('has O_NONBLOCK and O_CLOEXEC set', () => {
    using uffd = Userfaultfd.open();
    const fdinfo = fs.readFileSync(`/proc/self/fdinfo/${uffd.fd}`, 'utf8');
    const flags = Number.parseInt(/flags:\s+(\d+)/.exec(fdinfo)![1], 8);
    expect(flags & 0o4000, 'O_NONBLOCK').to.not.equal(0);
    expect(flags & 0o2000000, 'O_CLOEXEC').to.not.equal(0);
  });

  it('an unknown feature name is a TypeError naming the known ones', () => {
    expect(() => Userfaultfd.open({ features: ['NOPE' as never] }))
      .to.throw(TypeError, /unknown feature NOPE; known features: PAGEFAULT_FLAG_WP/)
      .with.property('code', 'ERR_INVALID_ARG_VALUE');
  });

  it('a feature the kernel lacks fails with ERR_UFFD_UNSUPPORTED before any fd is made', () => {
    const before = fs.readdirSync('/proc/self/fd').length;
    let err: unknown;
    try {
      Userfaultfd.open({ rawFeatures: 1n << 40n });
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(UnsupportedError);
    expect(err).to.include({ code: 'ERR_UFFD_UNSUPPORTED', feature: 'feature bit 0x10000000000' });
    expect(fs.readdirSync('/proc/self/fd').length).to.equal(before);
  });

  it('every feature the kernel reports can be negotiated by name', function () {
    const names = constants.FEATURE_NAMES.filter((n) => kernel().features[n]);
    using uffd = Userfaultfd.open({ features: names, userModeOnly: process.getuid?.() !== 0 });
    for (const n of names) expect(uffd.features[n], n).to.equal(true);
  });

  it('opens through the syscall and, on Linux >= 6.1 as root, through /dev/userfaultfd', function () {
    using viaSyscall = Userfaultfd.open({ via: 'syscall' });
    expect(viaSyscall.openedVia).to.equal('syscall');
    if (!kernel().open.device.ok) {
      process.stdout.write(`      skip: /dev/userfaultfd: ${kernel().open.device.error}\n`);
      return;
    }
    using viaDevice = Userfaultfd.open({ via: 'device' });
    expect(viaDevice.openedVia).to.equal('device');
    expect(viaDevice.ioctls).to.include('REGISTER');
  });

  it('userModeOnly is the default where the kernel has it (Linux >= 5.11), and can be turned off where privileged', function () {
    using u = Userfaultfd.open();
    expect(u.userModeOnly).to.equal(kernelHasUserModeOnly());
    if (!kernel().open.syscall.ok) {
      process.stdout.write('      skip: not privileged for userModeOnly: false\n');
      return;
    }
    using k = Userfaultfd.open({ userModeOnly: false });
    expect(k.userModeOnly).to.equal(false);
  });

  it('userModeOnly: true on a kernel without UFFD_USER_MODE_ONLY (Linux < 5.11) is ERR_UFFD_UNSUPPORTED, and leaks no fd', function () {
    skipIf(this, kernelHasUserModeOnly() ? 'this kernel has UFFD_USER_MODE_ONLY (the refusal is for Linux < 5.11)' : undefined);
    const before = fs.readdirSync('/proc/self/fd').length;
    let err: unknown;
    try {
      Userfaultfd.open({ userModeOnly: true }).close();
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(UnsupportedError);
    expect(err).to.include({ code: 'ERR_UFFD_UNSUPPORTED', feature: 'UFFD_USER_MODE_ONLY', since: '5.11' });
    expect((err as Error).message).to.match(/userModeOnly: false/);
    expect(fs.readdirSync('/proc/self/fd').length).to.equal(before);
  });

  it('EPERM on open explains the sysctl, /dev/userfaultfd and userModeOnly', function () {
    if (process.getuid?.() !== 0) this.skip();
    // Drop privileges in a child: as nobody, with the sysctl at 0, only userModeOnly may open.
    const r = runChild(
      `process.setuid(65534);
       try { uffd.Userfaultfd.open({ userModeOnly: false, via: 'syscall' }); console.log('opened'); }
       catch (e) { console.log(JSON.stringify({ code: e.code, syscall: e.syscall, message: e.message })); }
       const u = uffd.Userfaultfd.open(); console.log('usermode', u.fd >= 0);`,
    );
    if (kernel().unprivilegedUserfaultfd !== 0) {
      expect(r.stdout).to.include('opened');
      return;
    }
    const err = JSON.parse(r.stdout.split('\n')[0]) as { code: string; syscall: string; message: string };
    expect(err.code).to.equal('EPERM');
    expect(err.syscall).to.equal('userfaultfd');
    expect(err.message).to.match(/vm\.unprivileged_userfaultfd/).and.match(/\/dev\/userfaultfd/).and.match(/userModeOnly/);
    expect(r.stdout).to.include('usermode true');
  });

  it('options of the wrong type are TypeErrors', () => {
    expect(() => Userfaultfd.open('x' as never)).to.throw(TypeError);
    expect(() => Userfaultfd.open({ via: 'pipe' as never })).to.throw(TypeError, /via/);
    expect(() => Userfaultfd.open({ userModeOnly: 1 as never })).to.throw(TypeError, /userModeOnly/);
    expect(() => Userfaultfd.open({ features: 'THREAD_ID' as never })).to.throw(TypeError, /array/);
    expect(() => Userfaultfd.open({ rawFeatures: 1 as never })).to.throw(TypeError, /rawFeatures/);
  });
});

describe('api: closing', () => {
  it('close() releases the fd and every method then throws ERR_UFFD_CLOSED', () => {
    const uffd = Userfaultfd.open();
    const fd = uffd.fd;
    uffd.close();
    expect(uffd.closed).to.equal(true);
    expect(uffd.fd).to.equal(-1);
    expect(fs.existsSync(`/proc/self/fd/${fd}`)).to.equal(false);
    const range = { address: 0x10000n, length: page };
    for (const call of [
      () => uffd.register(range),
      () => uffd.unregister(range),
      () => uffd.wake(range),
      () => uffd.copy(0x10000n, Buffer.alloc(page)),
      () => uffd.zeropage(0x10000n, page),
      () => uffd.writeProtect(range, true),
      () => uffd.continue(0x10000n, page),
      () => uffd.poison(0x10000n, page),
      () => uffd.move(0x10000n, 0x20000n, page),
    ]) {
      expect(call).to.throw(Error, /closed/).with.property('code', 'ERR_UFFD_CLOSED');
    }
    uffd.close(); // a second close is a no-op
  });

  it('a closed handle never touches the reused descriptor number', () => {
    const uffd = Userfaultfd.open();
    const fd = uffd.fd;
    uffd.close();
    // The lowest free number is handed out again: the new uffd gets the old one's number.
    using other = Userfaultfd.open();
    expect(other.fd).to.equal(fd);
    expect(() => uffd.wake({ address: 0x10000n, length: page })).to.throw(/closed/);
    expect(uffd.fd).to.equal(-1);
  });

  it('using-declarations close the descriptor (Symbol.dispose)', () => {
    let fd = -1;
    {
      using uffd = Userfaultfd.open();
      fd = uffd.fd;
      expect(fs.existsSync(`/proc/self/fd/${fd}`)).to.equal(true);
    }
    expect(fs.existsSync(`/proc/self/fd/${fd}`)).to.equal(false);
  });

  it('fromFd wraps a shared descriptor without owning it', () => {
    using owner = Userfaultfd.open();
    const borrowed = Userfaultfd.fromFd(owner.fd, { features: [] });
    expect(borrowed.openedVia).to.equal('fd');
    borrowed.close();
    expect(fs.existsSync(`/proc/self/fd/${owner.fd}`)).to.equal(true);
  });
});
