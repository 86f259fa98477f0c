// A progress bar on stderr for long CLI jobs (roost datastore build --knn,
// the first `npm start`): redrawn in place on a terminal, a line per 10%
// otherwise, so logs stay short.
export interface ProgressBar {
  update: (done: number, total: number) => void;
  done: () => void;
}

export function progressBar(label: string, unit: string, out: NodeJS.WriteStream = process.stderr): ProgressBar {
  const started = Date.now();
  let lastTenth = -1;
  let last = { done: 0, total: 0 };
  const line = (done: number, total: number) => {
    const frac = total > 0 ? done / total : 1;
    const width = 30;
    const filled = Math.round(frac * width);
    const s = (Date.now() - started) / 1000;
    const eta = frac > 0 ? s / frac - s : 0;
    return `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}% ${done}/${total} ${unit}, ${s.toFixed(0)} s, ~${eta.toFixed(0)} s left`;
  };
  return {
    update(done, total) {
      last = { done, total };
      if (out.isTTY) {
        out.write(`\r${line(done, total)}`);
        return;
      }
      const tenth = Math.floor((10 * done) / Math.max(1, total));
      if (tenth !== lastTenth) {
        lastTenth = tenth;
        out.write(line(done, total) + '\n');
      }
    },
    done() {
      if (out.isTTY) out.write(`\r${line(last.total, last.total)}\n`);
    },
  };
}
