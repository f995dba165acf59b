package org.asci.search;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.ServiceLoader;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * Development/test search engine: one embedded OpenSearch node that speaks the
 * Elasticsearch REST API on a loopback address.
 *
 * <p>Usage:
 * <pre>
 * java -Xms512m -Xmx512m -cp target/asci-search-engine.jar:target/lib/* org.asci.search.SearchEngine \
 *      --home DIR [--host 127.0.0.1] [--http-port 9200] [--transport-port 9300] \
 *      [--cluster-name asci-dev] [--setting key=value ...]
 * </pre>
 *
 * <p>Prints {@code ASCI-SEARCH-ENGINE READY http://HOST:PORT} on stdout once the node
 * answers requests (a port of 0 means any free port; the line gives the real one); on
 * SIGTERM/SIGINT closes the node and exits with status 0. Exit status 1: failed to start;
 * 2: bad command line.
 *
 * <p>This class deliberately has no static references to OpenSearch or log4j types, so
 * that the system properties set at the top of {@link #main} are in place before either
 * is initialised. All OpenSearch work happens in {@link EmbeddedNode}.
 */
public final class SearchEngine {

    public static final String READY_PREFIX = "ASCI-SEARCH-ENGINE READY ";

    private SearchEngine() {}

    /** Parsed command line. */
    static final class Options {
        Path home;
        String host = "127.0.0.1";
        int httpPort = 9200;
        int transportPort = 9300;
        String clusterName = "asci-dev";
        final Map<String, String> extraSettings = new LinkedHashMap<>();
    }

    public static void main(String[] args) {
        Options options;
        try {
            options = parse(args);
        } catch (IllegalArgumentException e) {
            System.err.println("error: " + e.getMessage());
            usage(System.err);
            System.exit(2);
            return;
        }
        if (options == null) { // --help
            usage(System.out);
            return;
        }

        Path home = options.home.toAbsolutePath().normalize();
        Path logs = home.resolve("logs");
        try {
            // OpenSearch refuses to start without these directories.
            Files.createDirectories(home.resolve("data"));
            Files.createDirectories(logs);
            Files.createDirectories(home.resolve("config"));
            Files.createDirectories(home.resolve("modules"));
            Files.createDirectories(home.resolve("plugins"));
        } catch (IOException e) {
            System.err.println("error: cannot create directories under " + home + ": " + e);
            System.exit(1);
            return;
        }

        // Must happen before log4j / OpenSearch / Netty classes are loaded.
        defaultProperty("asci.search.logs", logs.toString());
        defaultProperty("log4j.shutdownHookEnabled", "false");
        defaultProperty("log4j2.disable.jmx", "true");
        defaultProperty("log4j2.formatMsgNoLookups", "true");
        defaultProperty("io.netty.noUnsafe", "true");
        defaultProperty("io.netty.noKeySetOptimization", "true");
        defaultProperty("io.netty.recycler.maxCapacityPerThread", "0");
        defaultProperty("io.netty.allocator.numDirectArenas", "0");
        defaultProperty("java.awt.headless", "true");

        EmbeddedNode node = new EmbeddedNode(options, home);
        CountDownLatch stopped = new CountDownLatch(1);
        installSignalHandlers(node, stopped);
        Runtime.getRuntime().addShutdownHook(new Thread(node::stop, "asci-search-engine-shutdown"));

        String url;
        try {
            url = node.start();
        } catch (Throwable t) {
            System.err.println("error: search engine failed to start: " + t);
            t.printStackTrace(System.err);
            node.stop();
            System.exit(1);
            return;
        }
        System.out.println(READY_PREFIX + url);
        System.out.flush();

        try {
            stopped.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** SIGTERM/SIGINT: close the node, then exit 0 (the JVM default would be 143/130). */
    private static void installSignalHandlers(EmbeddedNode node, CountDownLatch stopped) {
        for (String name : new String[] {"TERM", "INT"}) {
            try {
                sun.misc.Signal.handle(new sun.misc.Signal(name), signal -> {
                    Thread t = new Thread(() -> {
                        node.stop();
                        stopped.countDown();
                        System.exit(0);
                    }, "asci-search-engine-sig" + name);
                    t.start();
                });
            } catch (Throwable t) {
                // Not supported on this platform/JVM: the shutdown hook still closes the node.
            }
        }
    }

    private static void defaultProperty(String key, String value) {
        if (System.getProperty(key) == null) {
            System.setProperty(key, value);
        }
    }

    static Options parse(String[] args) {
        Options o = new Options();
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            String value = null;
            int eq = arg.indexOf('=');
            if (arg.startsWith("--") && eq > 0) {
                value = arg.substring(eq + 1);
                arg = arg.substring(0, eq);
            }
            switch (arg) {
                case "-h":
                case "--help":
                    return null;
                case "--home":
                case "--host":
                case "--http-port":
                case "--transport-port":
                case "--cluster-name":
                case "--setting":
                    if (value == null) {
                        if (i + 1 >= args.length) {
                            throw new IllegalArgumentException("missing value for " + arg);
                        }
                        value = args[++i];
                    }
                    break;
                default:
                    throw new IllegalArgumentException("unknown argument: " + args[i]);
            }
            switch (arg) {
                case "--home":
                    o.home = Paths.get(value);
                    break;
                case "--host":
                    o.host = value;
                    break;
                case "--http-port":
                    o.httpPort = port(arg, value);
                    break;
                case "--transport-port":
                    o.transportPort = port(arg, value);
                    break;
                case "--cluster-name":
                    o.clusterName = value;
                    break;
                case "--setting": {
                    int sep = value.indexOf('=');
                    if (sep <= 0) {
                        throw new IllegalArgumentException("--setting expects key=value, got: " + value);
                    }
                    o.extraSettings.put(value.substring(0, sep).trim(), value.substring(sep + 1));
                    break;
                }
                default:
                    break;
            }
        }
        if (o.home == null) {
            throw new IllegalArgumentException("--home DIR is required");
        }
        if (o.host.isEmpty() || o.clusterName.isEmpty()) {
            throw new IllegalArgumentException("--host and --cluster-name must not be empty");
        }
        return o;
    }

    private static int port(String option, String value) {
        int p;
        try {
            p = Integer.parseInt(value.trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(option + " expects a number, got: " + value);
        }
        if (p < 0 || p > 65535) { // 0: any free port (the READY line tells which)
            throw new IllegalArgumentException(option + " out of range: " + p);
        }
        return p;
    }

    private static void usage(PrintStream out) {
        out.println("usage: java -cp CLASSPATH org.asci.search.SearchEngine --home DIR"
            + " [--host 127.0.0.1] [--http-port 9200] [--transport-port 9300]"
            + " [--cluster-name asci-dev] [--setting key=value ...]");
    }

    /** Everything that touches OpenSearch classes. */
    static final class EmbeddedNode {
        private final Options options;
        private final Path home;
        private volatile org.opensearch.node.Node node;
        private boolean stopped;

        EmbeddedNode(Options options, Path home) {
            this.options = options;
            this.home = home;
        }

        /** Starts the node and returns the HTTP base URL. */
        String start() throws Exception {
            org.opensearch.common.settings.Settings.Builder settings = org.opensearch.common.settings.Settings.builder()
                .put("path.home", home.toString())
                .put("path.data", home.resolve("data").toString())
                .put("path.logs", home.resolve("logs").toString())
                .put("cluster.name", options.clusterName)
                .put("node.name", options.clusterName + "-node")
                .putList("node.roles", "cluster_manager", "data", "ingest")
                .put("discovery.type", "single-node")
                .put("network.host", options.host)
                .put("http.port", Integer.toString(options.httpPort))
                .put("transport.port", Integer.toString(options.transportPort))
                .put("http.type", "netty4")
                .put("transport.type", "netty4")
                .put("cluster.routing.allocation.disk.threshold_enabled", "false")
                .put("action.auto_create_index", "true");
            for (Map.Entry<String, String> e : options.extraSettings.entrySet()) {
                settings.put(e.getKey(), e.getValue());
            }

            registerPainlessExtensions();

            org.opensearch.env.Environment environment = org.opensearch.node.InternalSettingsPreparer.prepareEnvironment(
                settings.build(),
                Collections.emptyMap(),
                home.resolve("config"),
                () -> options.clusterName + "-node"
            );
            List<Class<? extends org.opensearch.plugins.Plugin>> plugins = new ArrayList<>();
            plugins.add(org.opensearch.transport.Netty4Plugin.class);
            plugins.add(org.opensearch.ingest.common.IngestCommonPlugin.class);
            plugins.add(org.opensearch.painless.PainlessPlugin.class);
            plugins.add(org.opensearch.script.mustache.MustachePlugin.class);
            plugins.add(org.opensearch.analysis.common.CommonAnalysisPlugin.class);
            plugins.add(org.opensearch.index.mapper.MapperExtrasPlugin.class);

            synchronized (this) {
                if (stopped) {
                    throw new IllegalStateException("stopped before start");
                }
                node = new PluginNode(environment, plugins);
            }
            node.start();
            prepareCluster(node.client());

            org.opensearch.http.HttpServerTransport http = node.injector()
                .getInstance(org.opensearch.http.HttpServerTransport.class);
            org.opensearch.core.common.transport.TransportAddress address = http.boundAddress().publishAddress();
            String hostPart = address.address().getAddress() instanceof java.net.Inet6Address
                ? "[" + address.getAddress() + "]"
                : address.getAddress();
            return "http://" + hostPart + ":" + address.getPort();
        }

        /**
         * One node can never host a replica, so by default every new index would stay
         * yellow. {@code cluster.default_number_of_replicas} is only honoured as a
         * cluster (persistent) setting, not as a node setting, so it is applied here,
         * unless it was set before (an explicit choice then survives restarts). Indices
         * that ask for replicas explicitly still get them.
         * Then waits until existing indices are at least yellow, so that READY means usable.
         */
        private static void prepareCluster(org.opensearch.client.Client client) {
            String key = "cluster.default_number_of_replicas";
            org.opensearch.cluster.metadata.Metadata metadata = client.admin().cluster().prepareState()
                .clear().setMetadata(true).get().getState().metadata();
            if (metadata.persistentSettings().get(key) == null && metadata.transientSettings().get(key) == null) {
                client.admin().cluster().prepareUpdateSettings()
                    .setPersistentSettings(org.opensearch.common.settings.Settings.builder().put(key, 0))
                    .get();
            }
            client.admin().cluster().prepareHealth()
                .setWaitForYellowStatus()
                .setTimeout(org.opensearch.common.unit.TimeValue.timeValueSeconds(60))
                .get();
        }

        /**
         * Classpath plugins do not get their extension points wired by the PluginsService
         * (that only happens for plugins loaded from bundles). Painless keeps the
         * extra allow-lists in a static map, so feeding the SPI-registered extensions
         * (ingest-common's Processors.*, analysis-common's token helpers) to a throwaway
         * instance before the node exists makes them visible to the node's instance too.
         */
        private static void registerPainlessExtensions() {
            new org.opensearch.painless.PainlessPlugin().loadExtensions(
                new org.opensearch.plugins.ExtensiblePlugin.ExtensionLoader() {
                    @Override
                    public <T> List<T> loadExtensions(Class<T> type) {
                        List<T> found = new ArrayList<>();
                        ServiceLoader.load(type, SearchEngine.class.getClassLoader()).forEach(found::add);
                        return found;
                    }
                }
            );
        }

        /** Idempotent; safe to call from the signal thread and the shutdown hook. */
        synchronized void stop() {
            if (stopped) {
                return;
            }
            stopped = true;
            org.opensearch.node.Node n = node;
            if (n == null) {
                return;
            }
            try {
                n.close();
                if (!n.awaitClose(10, TimeUnit.SECONDS)) {
                    System.err.println("warning: search engine did not close within 10s");
                }
            } catch (Throwable t) {
                System.err.println("warning: error while closing search engine: " + t);
            }
        }
    }

    /** Node's plugin-accepting constructor is protected. */
    static final class PluginNode extends org.opensearch.node.Node {
        PluginNode(org.opensearch.env.Environment environment,
                   Collection<Class<? extends org.opensearch.plugins.Plugin>> plugins) {
            super(environment, plugins, true);
        }
    }
}
