/** Plain-text tables: columns two spaces apart at least, the first `leftCols` left-aligned, the rest right-aligned. */
export function textTable(rows: readonly (readonly string[])[], leftCols = 1): string[] {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) =>
    r
      .map((c, i) => (i < leftCols ? c.padEnd(w[i]) : c.padStart(w[i])))
      .join('  ')
      .trimEnd(),
  );
}
