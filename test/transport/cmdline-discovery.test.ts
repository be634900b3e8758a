import { DiscoveryError } from '../../lib/errors';
import { describeSpec, discoverCmdline } from '../../lib/transport';
import { kernelWords } from '../../lib/transport/cmdline-discovery';
import * as main from '../../lib';

const labels = (cmdline: string): string[] => discoverCmdline(cmdline).map(describeSpec);

describe('discoverCmdline', () => {
  test('is exported from the package entry', () => {
    expect(main.discoverCmdline).toBe(discoverCmdline);
  });

  test('QEMU microvm (x86-64): one entry per transport, irq given, suffixed size', () => {
    // What qemu-system-x86_64 -M microvm appends (hw/i386/microvm.c): "virtio_mmio.device=512@0x<base>:<irq>".
    const cmdline =
      'console=ttyS0 root=/dev/vda rw earlyprintk=ttyS0 virtio_mmio.device=512@0xfeb00e00:12 ' +
      'virtio_mmio.device=512@0xfeb00c00:11\n';
    expect(discoverCmdline(cmdline)).toEqual([
      { kind: 'physical', size: 512, base: 0xfeb00e00n, irq: 12 },
      { kind: 'physical', size: 512, base: 0xfeb00c00n, irq: 11 },
    ]);
  });

  test('Firecracker: 4K windows with an id, mixed with other arguments', () => {
    const cmdline =
      'reboot=k panic=1 pci=off virtio_mmio.device=4K@0xd0000000:5 nomodule ' +
      'virtio_mmio.device=4K@0xd0001000:6:3 i8042.noaux';
    expect(discoverCmdline(cmdline)).toEqual([
      { kind: 'physical', size: 4096, base: 0xd0000000n, irq: 5 },
      { kind: 'physical', size: 4096, base: 0xd0001000n, irq: 6, id: 3 },
    ]);
  });

  test('K, M and G suffixes in either case, decimal and hex', () => {
    expect(
      labels(
        'virtio_mmio.device=1k@4096:1 virtio_mmio.device=1M@0x10000000:2 ' +
          'virtio_mmio.device=1g@0x100000000:3:7 virtio_mmio.device=0x200@167772160:4',
      ),
    ).toEqual(['0x400@0x1000:1', '0x100000@0x10000000:2', '0x40000000@0x100000000:3:7', '0x200@0xa000000:4']);
  });

  test('none: an empty line, other parameters, a look-alike name', () => {
    expect(discoverCmdline('')).toEqual([]);
    expect(discoverCmdline('console=ttyAMA0 root=/dev/vda')).toEqual([]);
    expect(
      discoverCmdline('virtio_mmio.devices=0x200@0x1000:1 xvirtio_mmio.device=0x200@0x1000:1 virtio_mmio.device_x=1'),
    ).toEqual([]);
  });

  test('"-" and "_" are the same in the parameter name, as to the kernel', () => {
    expect(labels('virtio-mmio.device=0x200@0xa000000:48')).toEqual(['0x200@0xa000000:48']);
  });

  test('quotes around the value or around the whole word are removed', () => {
    expect(labels('a="x y" virtio_mmio.device="0x200@0xa000200:49" "virtio_mmio.device=0x200@0xa000400:50" b')).toEqual(
      ['0x200@0xa000200:49', '0x200@0xa000400:50'],
    );
  });

  test('a quoted value of another parameter that contains the text is not an entry', () => {
    expect(discoverCmdline('init.args="virtio_mmio.device=0x200@0x1000:1 x"')).toEqual([]);
  });

  test('words after a lone "--" go to init and are not read', () => {
    expect(labels('virtio_mmio.device=0x200@0x1000:1 -- virtio_mmio.device=0x200@0x2000:2')).toEqual([
      '0x200@0x1000:1',
    ]);
  });

  test('tabs and newlines separate words', () => {
    expect(labels('\tvirtio_mmio.device=0x200@0x1000:1\nvirtio_mmio.device=0x200@0x2000:2\n')).toEqual([
      '0x200@0x1000:1',
      '0x200@0x2000:2',
    ]);
  });

  test.each([
    ['virtio_mmio.device=banana', /entry 1: .*"banana".*no "@"/],
    ['virtio_mmio.device=0x200@0x1000:1 virtio_mmio.device=0x200@0x1001:2', /entry 2: .*not 4-byte aligned/],
    ['virtio_mmio.device=0x10@0x1000:1', /entry 1: .*smaller than/],
    ['virtio_mmio.device=0x200@0x1000:1:2:3', /too many ":"/],
    ['virtio_mmio.device=', /entry 1: .*empty/],
    ['virtio_mmio.device', /entry 1 "virtio_mmio.device" has no "=<size>@/],
    ['virtio_mmio.device=0x200@0x1000:x', /irq "x"/],
  ])('a malformed entry throws DiscoveryError naming it: %s', (cmdline, message) => {
    let thrown: unknown;
    try {
      discoverCmdline(cmdline);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(DiscoveryError);
    expect(thrown).toMatchObject({ code: 'ERR_VIRTIO_DISCOVERY', message: expect.stringMatching(message) });
  });

  test('a non-string is a TypeError', () => {
    expect(() => discoverCmdline(42 as unknown as string)).toThrow(TypeError);
  });
});

describe('kernelWords', () => {
  test('splits and unquotes as the kernel does', () => {
    expect([...kernelWords(' a  b=1 "c=2 3" d="4 5" e="6" -- f')]).toEqual([
      { name: 'a' },
      { name: 'b', value: '1' },
      { name: 'c', value: '2 3' },
      { name: 'd', value: '4 5' },
      { name: 'e', value: '6' },
      { name: '--' },
      { name: 'f' },
    ]);
  });
});
