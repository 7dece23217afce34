// Offline stand-in for https://deno.land/std@0.186.0/io/mod.ts (readLines only), which
// dspy's PythonInterpreter runner imports at start. deno.land is unreachable here; the
// benchmark maps that URL to this file with --import-map and says so in its output.
export async function* readLines(
  reader: { read(p: Uint8Array): Promise<number | null> },
): AsyncIterableIterator<string> {
  const decoder = new TextDecoder();
  const buf = new Uint8Array(1 << 16);
  let pending = "";
  while (true) {
    const n = await reader.read(buf);
    if (n === null) break;
    pending += decoder.decode(buf.subarray(0, n), { stream: true });
    let idx;
    while ((idx = pending.indexOf("\n")) >= 0) {
      yield pending.slice(0, idx).replace(/\r$/, "");
      pending = pending.slice(idx + 1);
    }
  }
  pending += decoder.decode();
  if (pending.length > 0) yield pending;
}
