/**
 * STAC JSON-schema validation offline: ajv with only the schemas vendored under
 * test/fixtures/stac-schemas (see its README), every $ref resolved by their own $id. A schema an
 * object names in stac_extensions that is not vendored is an error, not a download.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';

const DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'stac-schemas');
const CORE = {
  Feature: 'https://schemas.stacspec.org/v1.0.0/item-spec/json-schema/item.json',
  Collection: 'https://schemas.stacspec.org/v1.0.0/collection-spec/json-schema/collection.json',
} as const;

function jsonFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = path.join(dir, n);
    return statSync(p).isDirectory() ? jsonFiles(p) : n.endsWith('.json') ? [p] : [];
  });
}

let ajv: Ajv | null = null;
function validator(id: string): ValidateFunction {
  if (!ajv) {
    // strict off: the STAC schemas use keywords (e.g. "examples" in odd places) ajv's strict mode rejects.
    ajv = new Ajv({ strict: false, allErrors: true });
    const addFormats = addFormatsModule as unknown as (a: Ajv) => Ajv;
    addFormats(ajv);
    // ajv-formats has no IRI formats: an absolute IRI has a scheme, a reference has no blanks.
    ajv.addFormat('iri', /^[a-z][a-z0-9+.-]*:\S*$/i);
    ajv.addFormat('iri-reference', /^\S*$/);
    for (const file of jsonFiles(DIR)) ajv.addSchema(JSON.parse(readFileSync(file, 'utf8')) as object);
  }
  const v = ajv.getSchema(id) ?? ajv.getSchema(`${id}#`);
  if (!v) throw new Error(`schema ${id} is not vendored under ${DIR}`);
  return v;
}

/** Every schema violation of a STAC item or collection (core + each listed extension), as "schema: path message" lines; [] = valid. */
export function stacErrors(doc: Record<string, unknown>): string[] {
  const core = CORE[doc.type as keyof typeof CORE];
  if (!core) return [`type ${String(doc.type)} is neither Feature nor Collection`];
  const ids = [core, ...((doc.stac_extensions as string[] | undefined) ?? [])];
  return ids.flatMap((id) => {
    const v = validator(id);
    return v(doc) ? [] : (v.errors ?? []).map((e) => `${path.basename(path.dirname(id))}/${path.basename(id)}: ${e.instancePath || '/'} ${e.message ?? ''}`);
  });
}
