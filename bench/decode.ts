/**
 * `npm run bench -- --decode`: DEFLATE decoders on the same real files, in one run. Every
 * full-resolution tile of the sample L2A tile's band COGs (../shared/data/s2-l2a-29RKH) is
 * inflated by node:zlib (what raster/ uses), by the npm alternatives (fflate and pako in
 * JavaScript, @hazae41/foras in WebAssembly), each checked to give the same bytes as node:zlib,
 * and read by GDAL (libdeflate, python3 osgeo) from the same files for comparison.
 */
import { execFileSync } from 'node:child_process';
import { open, readdir } from 'node:fs/promises';
import path from 'node:path';
import { inflateSync } from 'node:zlib';
import { fromFile } from 'geotiff';
import { SAMPLE_DIR } from './scene.ts';

export interface DecoderResult {
  name: string;
  /**
   * Median CPU seconds (of this thread's process, or GDAL's) to inflate every tile once: on a
   * shared machine wall time mostly measures the wait for a core.
   */
  seconds: number;
  /** Decompressed megabytes per second (1e6 bytes). */
  mbPerSecond: number;
  /** Same bytes as node:zlib for every tile (null for GDAL: timed only, its output stays inside GDAL). */
  exact: boolean | null;
  note: string;
}

export interface DecodeComparison {
  files: number;
  tiles: number;
  compressedMB: number;
  decompressedMB: number;
  reps: number;
  decoders: DecoderResult[];
}

type Inflate = (data: Uint8Array) => Uint8Array;

/** Each decoder, loaded where it is used (devDependencies: the product uses node:zlib only). */
async function decoders(): Promise<{ name: string; note: string; inflate: Inflate }[]> {
  const fflate = await import('fflate');
  const pako = (await import('pako')).default;
  const foras = await import('@hazae41/foras');
  await foras.initBundledOnce();
  const viaForas: Inflate = (data) => {
    const out = foras.unzlib(new foras.Memory(data));
    const copy = out.bytes.slice();
    out.free();
    return copy;
  };
  return [
    { name: 'node:zlib inflateSync', note: `zlib ${process.versions.zlib} (native, in raster/ today)`, inflate: (d) => inflateSync(d) },
    { name: 'fflate unzlibSync', note: 'fflate 0.8 (JavaScript)', inflate: (d) => fflate.unzlibSync(d) },
    { name: 'pako inflate', note: 'pako 2 (JavaScript; the decoder geotiff.js ships with)', inflate: (d) => pako.inflate(d) },
    { name: '@hazae41/foras unzlib', note: 'foras 2 (WebAssembly, Rust flate2/miniz_oxide)', inflate: viaForas },
  ];
}

/** The compressed full-resolution tiles of every band file. */
async function rawTiles(dir: string): Promise<{ files: string[]; tiles: Uint8Array[] }> {
  const files = (await readdir(dir)).filter((f) => /^B\w\w\.tif$/.test(f)).sort().map((f) => path.join(dir, f));
  const tiles: Uint8Array[] = [];
  for (const file of files) {
    const image = await (await fromFile(file)).getImage(0);
    const fd = image.getFileDirectory();
    const offsets = Array.from(await fd.loadValue('TileOffsets') as ArrayLike<number>, Number);
    const counts = Array.from(await fd.loadValue('TileByteCounts') as ArrayLike<number>, Number);
    const handle = await open(file, 'r');
    try {
      for (let i = 0; i < offsets.length; i++) {
        const buf = new Uint8Array(counts[i]!);
        await handle.read(buf, 0, buf.length, offsets[i]!);
        tiles.push(buf);
      }
    } finally {
      await handle.close();
    }
  }
  return { files, tiles };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** GDAL reading every band file's full-resolution band once per rep (one thread, CPU seconds), in one python process. */
function gdalSeconds(files: string[], reps: number): number[] {
  const script = [
    'import sys, time', 'from osgeo import gdal', 'gdal.UseExceptions()',
    "gdal.SetConfigOption('GDAL_NUM_THREADS', '1')", "gdal.SetConfigOption('GDAL_DISABLE_READDIR_ON_OPEN', 'EMPTY_DIR')",
    'files = sys.argv[2:]', 'out = []',
    'for r in range(int(sys.argv[1]) + 1):',
    '    t0 = time.process_time()',
    '    for f in files:',
    '        ds = gdal.Open(f)', '        ds.GetRasterBand(1).ReadRaster()', '        ds = None',
    '    out.append(time.process_time() - t0)',
    "print(' '.join(str(s) for s in out[1:]))",
  ].join('\n');
  const text = execFileSync('/usr/bin/python3', ['-c', script, String(reps), ...files], { encoding: 'utf8' });
  return text.trim().split(/\s+/).map(Number);
}

export async function compareDecoders(reps = 5, dir = SAMPLE_DIR, log: (line: string) => void = () => {}): Promise<DecodeComparison> {
  const { files, tiles } = await rawTiles(dir);
  const reference = tiles.map((t) => inflateSync(t));
  const decompressed = reference.reduce((s, t) => s + t.length, 0);
  const compressed = tiles.reduce((s, t) => s + t.length, 0);
  const results: DecoderResult[] = [];
  for (const d of await decoders()) {
    const exact = tiles.every((t, i) => equal(d.inflate(t), reference[i]!)); // also the warm-up
    const seconds: number[] = [];
    for (let r = 0; r < reps; r++) {
      const c0 = process.cpuUsage();
      for (const t of tiles) d.inflate(t);
      const c = process.cpuUsage(c0);
      seconds.push((c.user + c.system) / 1e6);
    }
    const s = median(seconds);
    results.push({ name: d.name, seconds: s, mbPerSecond: decompressed / 1e6 / s, exact, note: d.note });
    log(`  ${d.name}: ${s.toFixed(3)} s, ${(decompressed / 1e6 / s).toFixed(0)} MB/s, ${exact ? 'same bytes' : 'DIFFERENT BYTES'}`);
  }
  try {
    const s = median(gdalSeconds(files, reps));
    results.push({ name: 'GDAL ReadRaster', seconds: s, mbPerSecond: decompressed / 1e6 / s, exact: null, note: `GDAL ${gdalVersion()} (libdeflate), open + read the full-resolution band, one thread` });
    log(`  GDAL: ${s.toFixed(3)} s, ${(decompressed / 1e6 / s).toFixed(0)} MB/s`);
  } catch (err) {
    log(`  GDAL not measured: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  }
  return { files: files.length, tiles: tiles.length, compressedMB: compressed / 1e6, decompressedMB: decompressed / 1e6, reps, decoders: results };
}

function gdalVersion(): string {
  return execFileSync('/usr/bin/python3', ['-c', 'from osgeo import gdal; print(gdal.__version__)'], { encoding: 'utf8' }).trim();
}

export function decodeMarkdown(c: DecodeComparison): string {
  const base = c.decoders[0]!.seconds;
  const rows = c.decoders.map((d) => `| ${d.name} | ${d.seconds.toFixed(3)} | ${d.mbPerSecond.toFixed(0)} | ${(base / d.seconds).toFixed(2)} | ${d.exact === null ? '-' : d.exact ? 'yes' : 'NO'} | ${d.note} |`);
  return [
    `Inflating every full-resolution tile of the ${c.files} band COGs of s2-l2a-29RKH once (${c.tiles} tiles, ${c.compressedMB.toFixed(1)} MB compressed, ${c.decompressedMB.toFixed(1)} MB decompressed), median CPU seconds of ${c.reps}, one thread:`,
    '',
    '| decoder | CPU s | MB/s | speed vs node:zlib | same bytes | what |',
    '|---|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}
