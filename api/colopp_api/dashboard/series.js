/* colopp dashboard: turn metric samples and events into chart series (pure functions).
 *
 * A sample (GET /v1/protections/{id}/metrics) holds cumulative counters (comparator
 * counters, QEMU CPU seconds, the hold-time histogram) and this interval's figures
 * (new_checkpoints, checkpoint_reasons, checkpoint_pauses_ms). Cumulative counters restart
 * when a process restarts (a new comparator, a new QEMU after a failover): a decrease, or a
 * different pid, starts a new baseline instead of producing a negative rate.
 */
"use strict";

(function (global) {
  const MINUTE = 60;

  /** For each i, the index of the first sample with t > t[i] - width (two pointers). */
  function windowStarts(ts, width) {
    const starts = new Array(ts.length);
    let j = 0;
    for (let i = 0; i < ts.length; i++) {
      while (ts[j] <= ts[i] - width) j++;
      starts[i] = j;
    }
    return starts;
  }

  /** Rolling sums of per-interval values (nulls count as 0) over `width` seconds. */
  function rollingSum(ts, values, width) {
    const starts = windowStarts(ts, width);
    const out = new Array(ts.length);
    let sum = 0;
    let j = 0;
    for (let i = 0; i < ts.length; i++) {
      sum += values[i] || 0;
      while (j < starts[i]) sum -= values[j++] || 0;
      out[i] = sum;
    }
    return out;
  }

  /** Per-interval increases of a cumulative counter; null at a restart or when missing. */
  function deltas(values) {
    const out = new Array(values.length).fill(null);
    for (let i = 1; i < values.length; i++) {
      const a = values[i - 1];
      const b = values[i];
      if (a == null || b == null || b < a) continue;
      out[i] = b - a;
    }
    return out;
  }

  /** Nearest-rank percentile of a non-empty sorted array. */
  function percentile(sorted, q) {
    const rank = Math.max(1, Math.ceil(q * sorted.length));
    return sorted[rank - 1];
  }

  /** Percentile of a bucketed histogram (upper bounds `bounds`, `counts` one longer: the
   * overflow), interpolated linearly inside the bucket as Prometheus does. */
  function histogramQuantile(bounds, counts, q) {
    const total = counts.reduce((a, b) => a + b, 0);
    if (total <= 0) return null;
    const target = q * total;
    let seen = 0;
    for (let i = 0; i < counts.length; i++) {
      if (seen + counts[i] >= target && counts[i] > 0) {
        if (i >= bounds.length) return bounds[bounds.length - 1];
        const lower = i === 0 ? 0 : bounds[i - 1];
        return lower + (bounds[i] - lower) * ((target - seen) / counts[i]);
      }
      seen += counts[i];
    }
    return bounds[bounds.length - 1];
  }

  function sortedKeys(objects) {
    const keys = new Set();
    for (const o of objects) if (o) for (const k of Object.keys(o)) keys.add(k);
    return [...keys].sort();
  }

  /** Checkpoints in the last minute, one series per reason, plus the total in view. */
  function checkpointSeries(samples, ts) {
    const perSample = samples.map((s) =>
      s.checkpoint_reasons || (s.new_checkpoints ? { all: s.new_checkpoints } : {}));
    const reasons = sortedKeys(perSample);
    const series = reasons.map((r) => ({
      label: r,
      values: rollingSum(ts, perSample.map((c) => c[r] || 0), MINUTE),
    }));
    const total = samples.reduce((n, s) => n + (s.new_checkpoints || 0), 0);
    return { series, total };
  }

  /** p50 and p99 of the checkpoint pauses of the last minute (ms). */
  function pauseSeries(samples, ts) {
    const starts = windowStarts(ts, MINUTE);
    const p50 = new Array(ts.length).fill(null);
    const p99 = new Array(ts.length).fill(null);
    let count = 0;
    for (let i = 0; i < ts.length; i++) {
      const window = [];
      for (let j = starts[i]; j <= i; j++) window.push(...(samples[j].checkpoint_pauses_ms || []));
      count += (samples[i].checkpoint_pauses_ms || []).length;
      if (!window.length) continue;
      window.sort((a, b) => a - b);
      p50[i] = percentile(window, 0.5);
      p99[i] = percentile(window, 0.99);
    }
    return { series: [{ label: "p50", values: p50 }, { label: "p99", values: p99 }], count };
  }

  /** Divergences in the last minute by reason (from the comparator's cumulative counts). */
  function divergenceSeries(samples, ts) {
    const known = samples.some((s) => s.divergences);
    const reasons = sortedKeys(samples.map((s) => s.divergences));
    let total = 0;
    const series = reasons.map((r) => {
      const d = deltas(samples.map((s) => (s.divergences ? s.divergences[r] || 0 : null)));
      total += d.reduce((a, b) => a + (b || 0), 0);
      return { label: r, values: rollingSum(ts, d, MINUTE) };
    });
    return { series, total, known };
  }

  /** Per-interval increases of the cumulative hold-time histogram. After a restart of the
   * comparator (a count went down, or there was none before) the new counts are the
   * increase, as Prometheus' increase() reads a counter reset. */
  function histogramDeltas(hist) {
    return hist.map((now, i) => {
      if (!now || i === 0) return null;
      const prev = hist[i - 1];
      const same = prev && prev.counts.length === now.counts.length &&
        prev.counts.every((n, k) => n <= now.counts[k]);
      if (!same) return { counts: now.counts.slice(), sum: now.sum };
      return { counts: now.counts.map((n, k) => n - prev.counts[k]), sum: now.sum - prev.sum };
    });
  }

  /** Hold latency of primary frames over the last minute: p50, p99 and mean (ms). */
  function holdSeries(samples, ts) {
    const starts = windowStarts(ts, MINUTE);
    const hist = samples.map((s) => s.hold_time || null);
    const increases = histogramDeltas(hist);
    const p50 = new Array(ts.length).fill(null);
    const p99 = new Array(ts.length).fill(null);
    const mean = new Array(ts.length).fill(null);
    let held = 0;
    for (let i = 0; i < ts.length; i++) {
      if (!hist[i]) continue;
      const counts = new Array(hist[i].counts.length).fill(0);
      let sum = 0;
      for (let j = starts[i]; j <= i; j++) {
        const d = increases[j];
        if (!d || d.counts.length !== counts.length) continue;
        d.counts.forEach((n, k) => { counts[k] += n; });
        sum += d.sum;
      }
      const total = counts.reduce((a, b) => a + b, 0);
      if (!total) continue;
      held = Math.max(held, total);
      p50[i] = histogramQuantile(hist[i].buckets, counts, 0.5) * 1000;
      p99[i] = histogramQuantile(hist[i].buckets, counts, 0.99) * 1000;
      mean[i] = (sum / total) * 1000;
    }
    return {
      series: [
        { label: "p50", values: p50 },
        { label: "p99", values: p99 },
        { label: "mean", values: mean },
      ],
      held,
    };
  }

  /** Comparator frames per second (10 s average): compared, pre-released, released. */
  function packetSeries(samples, ts) {
    const known = samples.some((s) => s.comparator);
    const names = [["compared", "compared"], ["prereleased", "pre-released"],
      ["released", "released"]];
    let total = 0;
    const series = names.map(([key, label]) => {
      const d = deltas(samples.map((s) => (s.comparator ? s.comparator[key] : null)));
      if (key === "compared" || key === "prereleased") {
        total += d.reduce((a, b) => a + (b || 0), 0);
      }
      return { label: label + " /s", values: rollingSum(ts, d, 10).map((n) => n / 10) };
    });
    return { series, total, known };
  }

  /** CPU of the primary's and the secondary's QEMU, % of one core (5 s average). */
  function cpuSeries(samples, ts) {
    const roles = ["secondary", "primary"];
    let seen = false;
    const series = roles.map((role) => {
      const d = new Array(samples.length).fill(null);
      for (let i = 1; i < samples.length; i++) {
        const host = samples[i][role];
        const a = samples[i - 1];
        const b = samples[i];
        if (!host || a[role] !== host) continue;
        const ca = (a.cpu_seconds || {})[host];
        const cb = (b.cpu_seconds || {})[host];
        const samePid = (a.pids || {})[host] === (b.pids || {})[host];
        if (ca == null || cb == null || cb < ca || !samePid) continue;
        d[i] = cb - ca;
        seen = true;
      }
      const secs = rollingSum(ts, d, 5);
      const spans = rollingSum(ts, ts.map((t, i) => (i && d[i] != null ? t - ts[i - 1] : 0)), 5);
      return {
        label: role + " %",
        values: secs.map((s, i) => (spans[i] > 0 ? (100 * s) / spans[i] : null)),
      };
    });
    return { series, known: seen };
  }

  /** Every chart's series from the samples (oldest first). */
  function derive(samples) {
    const ts = samples.map((s) => s.t);
    return {
      ts,
      checkpoints: checkpointSeries(samples, ts),
      pauses: pauseSeries(samples, ts),
      divergences: divergenceSeries(samples, ts),
      hold: holdSeries(samples, ts),
      packets: packetSeries(samples, ts),
      cpu: cpuSeries(samples, ts),
    };
  }

  /** Failover and switchover markers from events. */
  function markers(events) {
    return events
      .filter((e) => e.type === "failover" || e.type === "switchover")
      .map((e) => {
        const d = e.data || {};
        const took = d.failover_ms != null ? `, ${Math.round(d.failover_ms)} ms` : "";
        const text = e.type === "failover"
          ? `failover: ${d.host || "?"} lost (${d.health || "?"})${took}`
          : `switchover from ${d.host || "?"}`;
        return { id: e.id, t: e.t, kind: e.type, text };
      });
  }

  global.ColoppSeries = {
    derive, markers, rollingSum, deltas, percentile, histogramQuantile, histogramDeltas,
    windowStarts,
  };
})(window);
