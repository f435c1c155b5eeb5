package dev.kiln.cli;

import dev.kiln.registry.ModelRegistry;
import dev.kiln.registry.ModelVersion;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Parameters;

/** {@code kiln registry}: the model registry for operators. */
@Command(name = "registry", mixinStandardHelpOptions = true,
        description = {"Versioned model registry in a directory: immutable numbered versions, aliases moved atomically.",
                "Exit code 0 on success, 1 when refused or failed (reason on stderr), 2 on bad usage."},
        subcommands = {RegistryCommand.ListCmd.class, RegistryCommand.Show.class, RegistryCommand.Register.class,
                RegistryCommand.Promote.class, RegistryCommand.Rollback.class, RegistryCommand.Delete.class})
final class RegistryCommand implements Callable<Integer> {
    @Option(names = "--root", required = true, paramLabel = "DIR", description = "The registry's directory.", scope = picocli.CommandLine.ScopeType.INHERIT)
    Path root;

    @Option(names = "--json", description = "Print JSON.", scope = picocli.CommandLine.ScopeType.INHERIT)
    boolean json;

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() {
        spec.commandLine().usage(spec.commandLine().getOut());
        return 0;
    }

    /** The registry at --root, which must exist: only {@code register} creates one. */
    ModelRegistry open() throws java.io.IOException {
        if (!java.nio.file.Files.isDirectory(root)) {
            throw new java.nio.file.NoSuchFileException(root.toString(), null,
                    "no registry there ('kiln registry --root DIR register ...' creates one)");
        }
        return ModelRegistry.open(root);
    }

    ModelRegistry openOrCreate() throws java.io.IOException {
        return ModelRegistry.open(root);
    }

    static Map<String, Object> describe(ModelVersion v, Map<String, Integer> aliases) {
        Map<String, Object> o = new LinkedHashMap<>();
        o.put("name", v.name());
        o.put("version", v.number());
        o.put("sha256", v.sha256());
        o.put("size", v.size());
        o.put("created", v.created().toString());
        o.put("author", v.author());
        if (v.parent() != null) {
            o.put("parent", v.parent());
        }
        List<Object> as = new ArrayList<>();
        aliases.forEach((a, n) -> {
            if (n == v.number()) {
                as.add(a);
            }
        });
        o.put("aliases", as);
        o.put("metadata", new LinkedHashMap<String, Object>(v.metadata()));
        return o;
    }

    void print(Object json, String text) {
        PrintWriter out = spec.commandLine().getOut();
        out.println(this.json ? Json.write(json) : text);
        out.flush();
    }

    @Command(name = "list", mixinStandardHelpOptions = true, description = "Models, or the versions of one model.")
    static final class ListCmd implements Callable<Integer> {
        @ParentCommand RegistryCommand parent;
        @Parameters(arity = "0..1", paramLabel = "NAME") String name;

        @Override
        public Integer call() throws Exception {
            ModelRegistry r = parent.open();
            if (name == null) {
                List<String> models = r.models();
                parent.print(new ArrayList<Object>(models), String.join("\n", models));
                return 0;
            }
            if (!r.models().contains(name)) {  // a mistyped name: an error, not an empty list
                throw new IllegalStateException("model '" + name + "' is not in the registry " + r.root());
            }
            Map<String, Integer> aliases = r.aliases(name);
            List<Object> out = new ArrayList<>();
            StringBuilder text = new StringBuilder();
            for (ModelVersion v : r.versions(name)) {
                out.add(describe(v, aliases));
                text.append(String.format("%4d  %s  %s  %s%s%n", v.number(), v.created(), v.sha256().substring(0, 12),
                        v.author(), aliases.entrySet().stream().filter(e -> e.getValue() == v.number())
                                .map(e -> "  [" + e.getKey() + "]").reduce("", String::concat)));
            }
            parent.print(out, text.toString().stripTrailing());
            return 0;
        }
    }

    @Command(name = "show", mixinStandardHelpOptions = true, description = "One version, by number or alias.")
    static final class Show implements Callable<Integer> {
        @ParentCommand RegistryCommand parent;
        @Parameters(index = "0", paramLabel = "NAME") String name;
        @Parameters(index = "1", paramLabel = "VERSION|ALIAS") String which;

        @Override
        public Integer call() throws Exception {
            ModelRegistry r = parent.open();
            ModelVersion v = which.matches("[0-9]+") ? r.version(name, Integer.parseInt(which))
                    : r.resolve(name, which).orElseThrow(() -> new IllegalStateException("model '" + name + "' has no alias '" + which + "'"));
            Map<String, Object> d = describe(v, r.aliases(name));
            parent.print(d, d.toString());
            return 0;
        }
    }

    @Command(name = "register", mixinStandardHelpOptions = true, description = "Registers a file (a Kiln model file, or an encrypted artifact) as the next version.")
    static final class Register implements Callable<Integer> {
        @ParentCommand RegistryCommand parent;
        @Parameters(index = "0", paramLabel = "NAME") String name;
        @Parameters(index = "1", paramLabel = "FILE") Path file;
        @Option(names = "--meta", paramLabel = "KEY=VALUE", description = "Metadata (repeatable): metrics, author, parent, ...")
        Map<String, String> meta = new LinkedHashMap<>();

        @Override
        public Integer call() throws Exception {
            ModelVersion v = parent.openOrCreate().register(name, Files.readAllBytes(file), meta);
            parent.print(describe(v, Map.of()), "registered " + name + " version " + v.number() + " (" + v.sha256() + ")");
            return 0;
        }
    }

    @Command(name = "promote", mixinStandardHelpOptions = true, description = "Points an alias at a version (atomically).")
    static final class Promote implements Callable<Integer> {
        @ParentCommand RegistryCommand parent;
        @Parameters(index = "0", paramLabel = "NAME") String name;
        @Parameters(index = "1", paramLabel = "ALIAS") String alias;
        @Parameters(index = "2", paramLabel = "VERSION") int version;

        @Override
        public Integer call() throws Exception {
            parent.open().promote(name, alias, version);
            parent.print(Map.of("name", name, "alias", alias, "version", version), alias + " -> " + name + " version " + version);
            return 0;
        }
    }

    @Command(name = "rollback", mixinStandardHelpOptions = true, description = "Moves an alias back to its previous version.")
    static final class Rollback implements Callable<Integer> {
        @ParentCommand RegistryCommand parent;
        @Parameters(index = "0", paramLabel = "NAME") String name;
        @Parameters(index = "1", paramLabel = "ALIAS") String alias;

        @Override
        public Integer call() throws Exception {
            ModelVersion v = parent.open().rollback(name, alias);
            parent.print(Map.of("name", name, "alias", alias, "version", v.number()), alias + " -> " + name + " version " + v.number());
            return 0;
        }
    }

    @Command(name = "delete", mixinStandardHelpOptions = true, description = "Deletes a version (refused while an alias points to it).")
    static final class Delete implements Callable<Integer> {
        @ParentCommand RegistryCommand parent;
        @Parameters(index = "0", paramLabel = "NAME") String name;
        @Parameters(index = "1", paramLabel = "VERSION") int version;

        @Override
        public Integer call() throws Exception {
            parent.open().delete(name, version);
            parent.print(Map.of("name", name, "deleted", version), "deleted " + name + " version " + version);
            return 0;
        }
    }
}
