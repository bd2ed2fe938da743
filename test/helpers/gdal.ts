/** GDAL from tests: the COG validator GDAL ships, gdalinfo's JSON, Python snippets with numpy. */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export const PY = '/usr/bin/python3';
export const COG_VALIDATOR = '/usr/lib/python3/dist-packages/osgeo_utils/samples/validate_cloud_optimized_geotiff.py';
export const hasGdal = existsSync(PY) && spawnSync(PY, ['-c', 'from osgeo import gdal'], { stdio: 'ignore' }).status === 0;

export interface CogVerdict {
  /** The validator's exit status (0 = valid). */
  status: number | null;
  /** Everything it printed, GDAL's own warnings on stderr included. */
  output: string;
  /** True when valid with no warning and no error at all. */
  clean: boolean;
}

/** Runs GDAL's validate_cloud_optimized_geotiff.py (full check: leaders and trailers too). */
export function validateCog(file: string): CogVerdict {
  const r = spawnSync(PY, [COG_VALIDATOR, '--full-check=yes', file], { encoding: 'utf8' });
  const output = `${r.stdout}${r.stderr}`;
  const clean = r.status === 0 && r.stderr.trim() === '' && !/warning|error/i.test(r.stdout) && r.stdout.includes('is a valid cloud optimized GeoTIFF');
  return { status: r.status, output, clean };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const gdalinfo = (file: string): any => JSON.parse(execFileSync('gdalinfo', ['-json', file], { encoding: 'utf8' }));

/** Runs a Python snippet with GDAL and numpy (`gdal`, `np`, `json` imported, exceptions on). */
export function gdalPy(body: string): string {
  return execFileSync(PY, ['-c', `from osgeo import gdal\nimport json, numpy as np\ngdal.UseExceptions()\n${body}`], { encoding: 'utf8' }).trim();
}
