# taskmesh/redis, the offline path: built by compose/build-images.sh on the locally made
# taskmesh/base:bookworm with Debian's own redis-server (7.0 on bookworm), installed from
# Debian's mirror during the build. The context holds only this file and redis.conf.
FROM taskmesh/base:bookworm

# The package creates the `redis` system user. Its service is never started here.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log /var/log/redis \
 && install -d -o redis -g redis -m 0750 /data

# AOF everysec, noeviction, dir /data, logs to stdout (no logfile set).
COPY redis.conf /etc/redis/taskmesh.conf

USER redis
WORKDIR /data
VOLUME ["/data"]
EXPOSE 6379

HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=5 \
  CMD ["bash", "-c", "[[ $(redis-cli -p 6379 ping) == PONG ]]"]

# SIGTERM: redis-server flushes the AOF and exits 0.
STOPSIGNAL SIGTERM
CMD ["redis-server", "/etc/redis/taskmesh.conf"]
