/**
 * GDAL's own metadata beside the TIFF structure: the GDAL_METADATA tag (dataset items and band
 * descriptions) and the PAM sidecar `<file>.aux.xml`, where GDAL (and so QGIS) reads a band's
 * category names: the GTiff driver keeps them nowhere inside the TIFF.
 */
import { closeTiff, openTiff } from './tiff-file.ts';

const escapeXml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const unescapeXml = (s: string): string => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');

/**
 * The GDAL_METADATA tag's XML, or null when there is nothing to say. GDAL escapes item values
 * twice (CPLES_XML, then the XML writer) and unescapes twice on read. Band descriptions are
 * items with sample="<0-based band>" role="description", as GDAL writes SetDescription.
 */
export function gdalMetadataXml(items: Record<string, string>, bandDescriptions: readonly string[] = []): string | null {
  const lines = Object.entries(items).map(([k, v]) => `  <Item name="${escapeXml(k)}">${escapeXml(escapeXml(String(v)))}</Item>`);
  bandDescriptions.forEach((d, b) => {
    if (d) lines.push(`  <Item name="DESCRIPTION" sample="${b}" role="description">${escapeXml(escapeXml(d))}</Item>`);
  });
  return lines.length ? `<GDALMetadata>\n${lines.join('\n')}\n</GDALMetadata>\n` : null;
}

/** A PAM .aux.xml giving band 1 its category names (value i is named names[i]). */
export function pamCategoriesXml(names: readonly string[]): string {
  const cats = names.map((n) => `      <Category>${escapeXml(n)}</Category>`).join('\n');
  return `<PAMDataset>\n  <PAMRasterBand band="1">\n    <CategoryNames>\n${cats}\n    </CategoryNames>\n  </PAMRasterBand>\n</PAMDataset>\n`;
}

/** The dataset-level GDAL_METADATA items of a GeoTIFF (per-band items are skipped). */
export async function readGeoTiffMetadata(path: string): Promise<Record<string, string>> {
  const file = await openTiff(path, 'GeoTIFF');
  try {
    const fd = file.image.getFileDirectory();
    if (!fd.hasTag('GDAL_METADATA')) return {};
    const xml = String(await fd.loadValue('GDAL_METADATA'));
    const out: Record<string, string> = {};
    for (const m of xml.matchAll(/<Item\s+([^>]*)>([\s\S]*?)<\/Item>/g)) {
      const attrs = m[1]!;
      const name = /name="([^"]*)"/.exec(attrs)?.[1];
      if (name === undefined || /\bsample="/.test(attrs) || /\brole="/.test(attrs)) continue;
      out[unescapeXml(name)] = unescapeXml(unescapeXml(m[2]!));
    }
    return out;
  } finally {
    await closeTiff(file.tiff);
  }
}
