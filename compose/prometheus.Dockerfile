# taskmesh/prometheus, the offline path: built by compose/build-images.sh --monitoring on
# the locally made taskmesh/base:bookworm with Debian's own `prometheus` package (2.42 on
# bookworm), installed from Debian's mirror during the build. The context holds only this
# file: the configuration (compose/monitoring/prometheus.yml and alerts.yml) is mounted by
# the compose file's `prometheus` service at /etc/prometheus/.
FROM taskmesh/base:bookworm

# The package creates the `prometheus` system user. Its service is never started here.
# --no-install-recommends leaves out prometheus-node-exporter; the web UI's JavaScript
# libraries are hard dependencies (Debian serves the classic UI). Trimmed: the raw time
# zone data of libjs-moment-timezone (210 MB; the UI loads only
# moment-timezone-with-data.min.js) and promtool (46 MB; the checks run it on the host,
# compose/monitoring/check.sh). 135 MB instead of 404 MB.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log \
      /usr/share/javascript/moment-timezone/data /usr/bin/promtool \
 && install -d -o prometheus -g prometheus -m 0750 /prometheus

USER prometheus
WORKDIR /prometheus
VOLUME ["/prometheus"]
EXPOSE 9090

# Liveness with no extra tool: bash's /dev/tcp asks /-/healthy for a 200.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9090 && printf 'GET /-/healthy HTTP/1.0\\r\\n\\r\\n' >&3 && read -r line <&3 && [[ $line == HTTP/1.?' 200 '* ]]"]

# SIGTERM: Prometheus closes the TSDB and exits 0.
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", \
     "--storage.tsdb.path=/prometheus", \
     "--storage.tsdb.retention.time=2d", \
     "--web.listen-address=:9090", \
     "--web.enable-lifecycle"]
