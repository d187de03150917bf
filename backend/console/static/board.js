// The dashboard's charts (Apache ECharts, shipped in this folder): a bar per place and a line
// per month; a click opens the case list filtered to that place or month.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var data = JSON.parse(document.getElementById("figures").textContent);
    var places = echarts.init(document.getElementById("chart-places"));
    var months = echarts.init(document.getElementById("chart-months"));
    var pct = {local_rate: 1, satisfaction: 1};
    function value(row, metric) {
      var v = row[metric];
      if (v === null || v === undefined) return null;
      return pct[metric] ? Math.round(v * 1000) / 10 : v;
    }
    function drawPlaces(metric) {
      places.setOption({
        tooltip: {trigger: "axis"}, grid: {left: 48, right: 16, bottom: 72, top: 24},
        xAxis: {type: "category", data: data.places.map(function (p) { return p.name; }), axisLabel: {rotate: 40}},
        yAxis: {type: "value", name: pct[metric] ? "%" : ""},
        series: [{type: "bar", name: data.labels[metric], itemStyle: {color: "#b5442c"},
                  data: data.places.map(function (p) { return value(p, metric); })}]
      }, true);
    }
    drawPlaces("total");
    places.on("click", function (e) {
      var p = data.places[e.dataIndex];
      if (p && p.id) location.href = "/console/cases?tab=all&place=" + p.id;
    });
    months.setOption({
      tooltip: {trigger: "axis"}, legend: {top: 0}, grid: {left: 48, right: 48, bottom: 32, top: 36},
      xAxis: {type: "category", data: data.months.map(function (m) { return m.month; })},
      yAxis: [{type: "value", name: data.labels.total}, {type: "value", name: "%", max: 100}],
      series: [
        {type: "bar", name: data.labels.total, itemStyle: {color: "#b5442c"}, data: data.months.map(function (m) { return m.total; })},
        {type: "line", yAxisIndex: 1, name: data.labels.local_rate, data: data.months.map(function (m) { return value(m, "local_rate"); })},
        {type: "line", yAxisIndex: 1, name: data.labels.satisfaction, data: data.months.map(function (m) { return value(m, "satisfaction"); })}
      ]
    });
    months.on("click", function (e) {
      var m = data.months[e.dataIndex];
      if (m) location.href = "/console/cases?tab=all&month=" + m.month;
    });
    document.querySelectorAll("[data-metric]").forEach(function (b) {
      b.addEventListener("click", function () {
        document.querySelectorAll("[data-metric]").forEach(function (x) { x.classList.remove("on"); });
        b.classList.add("on");
        drawPlaces(b.dataset.metric);
      });
    });
    window.addEventListener("resize", function () { places.resize(); months.resize(); });
    document.body.dataset.chartsReady = "1";
  });
})();
