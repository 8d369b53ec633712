/* colopp dashboard: uPlot panels sharing one time axis and one cursor, with failover and
 * switchover markers. Series differ by dash pattern and legend label, not by colour alone.
 */
"use strict";

(function (global) {
  const SYNC_KEY = "colopp";
  // Okabe-Ito colours (distinguishable with the common colour-vision deficiencies).
  const PALETTE = ["#56b4e9", "#e69f00", "#009e73", "#f0e442", "#cc79a7", "#d55e00", "#0072b2"];
  const DASHES = [[], [10, 5], [2, 4], [12, 4, 2, 4], [6, 3], [1, 3], [16, 6]];
  const AXIS = { stroke: "#ccccdc", grid: { stroke: "#2c3235", width: 1 }, ticks: { stroke: "#2c3235" } };
  const HEIGHT = 200;

  function fmtTime(t) {
    return new Date(t * 1000).toLocaleTimeString([], { hour12: false });
  }

  function fmtNum(n, digits) {
    if (n == null || Number.isNaN(n)) return "–";
    return Number(n).toFixed(digits == null ? 1 : digits);
  }

  /** DOM markers (a dashed line and a text flag) over the plot, redrawn with it. */
  function markerPlugin(view) {
    return {
      hooks: {
        draw: [(u) => {
          const layer = u.over;
          layer.querySelectorAll(".marker").forEach((m) => m.remove());
          const [min, max] = [u.scales.x.min, u.scales.x.max];
          for (const m of view.markers()) {
            if (m.t < min || m.t > max) continue;
            const el = document.createElement("div");
            const left = u.valToPos(m.t, "x");
            // Near the right edge the flag hangs to the left of its line.
            const flip = left > u.over.clientWidth - 100 ? " marker-flip" : "";
            el.className = `marker marker-${m.kind}${flip}`;
            el.style.left = `${left}px`;
            el.title = `${fmtTime(m.t)} ${m.text}`;
            el.setAttribute("aria-label", el.title);
            const flag = document.createElement("span");
            flag.className = "marker-flag";
            flag.textContent = `▼ ${m.kind}`;
            el.append(flag);
            layer.append(el);
          }
        }],
      },
    };
  }

  /** One chart panel (`#panel-NAME`: a `.chart` box, an `.empty` note, a `.panel-note`).
   * `view` gives the shared x range (`xRange()`), the markers (`markers()`) and takes a
   * zoom (`onZoom([min, max])`, `onUnzoom()`). */
  class Panel {
    constructor(name, unit, view) {
      this.name = name;
      this.unit = unit;
      this.view = view;
      this.element = document.getElementById(`panel-${name}`);
      this.box = this.element.querySelector(".chart");
      this.chart = null;
      this.key = null;
    }

    build(labels) {
      if (this.chart) this.chart.destroy();
      const digits = this.unit === "ms" ? 2 : 1;
      const view = this.view;
      const opts = {
        width: Math.max(300, this.box.clientWidth),
        height: HEIGHT,
        cursor: { sync: { key: SYNC_KEY }, drag: { x: true, y: false } },
        scales: { x: { time: true, auto: false, range: () => view.xRange() } },
        axes: [AXIS, { ...AXIS, label: this.unit, size: 56 }],
        legend: { live: true },
        series: [{}, ...labels.map((label, i) => ({
          label,
          stroke: PALETTE[i % PALETTE.length],
          dash: DASHES[i % DASHES.length],
          width: 2,
          points: { show: false },
          value: (u, v) => fmtNum(v, digits),
        }))],
        plugins: [markerPlugin(view)],
        hooks: {
          setSelect: [(u) => {
            if (u.select.width < 5) return;
            const left = u.select.left;
            view.onZoom([u.posToVal(left, "x"), u.posToVal(left + u.select.width, "x")]);
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          }],
        },
      };
      this.box.replaceChildren();
      this.chart = new uPlot(opts, [[], ...labels.map(() => [])], this.box);
      this.chart.over.addEventListener("dblclick", () => view.onUnzoom());
    }

    /** Show `series` ([{label, values}]) over `ts`; `emptyText` overlays the chart. */
    draw(ts, series, emptyText, note) {
      const labels = series.length ? series.map((s) => s.label) : ["none"];
      const key = labels.join("\u0000");
      if (key !== this.key) { this.build(labels); this.key = key; }
      const values = series.length ? series.map((s) => s.values) : [ts.map(() => null)];
      this.chart.setData([ts, ...values], false);
      this.slide();
      const empty = this.element.querySelector(".empty");
      empty.hidden = !emptyText;
      empty.textContent = emptyText || "";
      this.element.querySelector(".panel-note").textContent = note || "";
    }

    /** Move the time axis to the view's range (live: it follows the clock). */
    slide() {
      const [min, max] = this.view.xRange();
      this.chart.setScale("x", { min, max });
    }

    resize() {
      if (this.chart) this.chart.setSize({ width: Math.max(300, this.box.clientWidth), height: HEIGHT });
    }
  }

  global.ColoppCharts = { Panel, fmtTime, fmtNum };
})(window);
