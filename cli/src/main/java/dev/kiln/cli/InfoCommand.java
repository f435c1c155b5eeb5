package dev.kiln.cli;

import dev.kiln.Kiln;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.stream.Collectors;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "info", mixinStandardHelpOptions = true,
        description = "Show the native library version, CPU features, kernel level, threads and memory.")
final class InfoCommand implements Callable<Integer> {
    @Option(names = "--json", description = "Print one JSON object instead of text.")
    boolean json;

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() {
        Kiln.MemoryStats mem = Kiln.memoryStats();
        Map<String, Object> info = new LinkedHashMap<>();
        info.put("version", Kiln.version());
        info.put("isa", Kiln.isa().settingName());
        info.put("best_isa", Kiln.bestIsa().settingName());
        info.put("cpu_features", Kiln.cpuFeatures().stream().map(f -> f.name().toLowerCase(java.util.Locale.ROOT))
                .collect(Collectors.toList()));
        info.put("threads", Kiln.threads());
        info.put("native_bytes_in_use", mem.bytesInUse());
        info.put("java", System.getProperty("java.version"));
        var out = spec.commandLine().getOut();
        if (json) {
            out.println(Json.write(info));
        } else {
            info.forEach((k, v) -> out.printf("%-20s %s%n", k, v));
        }
        return 0;
    }
}
