/* yamlcheck: parses YAML files with libyaml (the parser the gateway uses) and
 * checks the shape of what deploy/ ships: every Kubernetes document has
 * apiVersion, kind and metadata.name; a compose file has services, each with
 * an image or a build. Prints one line per problem; exit 1 if any.
 *   usage: yamlcheck kube|compose|plain FILE...
 */
#include <stdio.h>
#include <string.h>
#include <yaml.h>

static int problems;

static void problem(const char *file, const yaml_node_t *n, const char *fmt, const char *arg)
{
    fprintf(stderr, "%s:%lu: ", file, n ? (unsigned long)n->start_mark.line + 1 : 0ul);
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    problems++;
}

/* The value of key in mapping n, or NULL. */
static yaml_node_t *get(yaml_document_t *d, yaml_node_t *n, const char *key)
{
    if (!n || n->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(d, p->key);
        if (k && k->type == YAML_SCALAR_NODE && !strcmp((const char *)k->data.scalar.value, key))
            return yaml_document_get_node(d, p->value);
    }
    return NULL;
}

static int is_text(const yaml_node_t *n) { return n && n->type == YAML_SCALAR_NODE && n->data.scalar.length > 0; }

static void check_kube(const char *file, yaml_document_t *d, yaml_node_t *root)
{
    if (!root || root->type != YAML_MAPPING_NODE) { problem(file, root, "%sa document is not a mapping", ""); return; }
    if (!is_text(get(d, root, "apiVersion"))) problem(file, root, "%sno apiVersion", "");
    yaml_node_t *kind = get(d, root, "kind");
    if (!is_text(kind)) problem(file, root, "%sno kind", "");
    if (!is_text(get(d, get(d, root, "metadata"), "name"))) problem(file, root, "%sno metadata.name", "");
    const char *k = is_text(kind) ? (const char *)kind->data.scalar.value : "";
    if (!strcmp(k, "Deployment") && !get(d, get(d, get(d, root, "spec"), "template"), "spec"))
        problem(file, root, "%s: Deployment without spec.template.spec", k);
}

static void check_compose(const char *file, yaml_document_t *d, yaml_node_t *root)
{
    yaml_node_t *svcs = get(d, root, "services");
    if (!svcs || svcs->type != YAML_MAPPING_NODE) { problem(file, root, "%sno services", ""); return; }
    for (yaml_node_pair_t *p = svcs->data.mapping.pairs.start; p < svcs->data.mapping.pairs.top; p++) {
        yaml_node_t *name = yaml_document_get_node(d, p->key), *svc = yaml_document_get_node(d, p->value);
        if (!get(d, svc, "image") && !get(d, svc, "build") && !get(d, svc, "<<"))
            problem(file, svc, "service %s has neither image nor build", (const char *)name->data.scalar.value);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) { fprintf(stderr, "usage: yamlcheck kube|compose|plain FILE...\n"); return 2; }
    const char *mode = argv[1];
    for (int i = 2; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) { fprintf(stderr, "%s: cannot open\n", argv[i]); problems++; continue; }
        yaml_parser_t parser;
        if (!yaml_parser_initialize(&parser)) { fclose(f); return 2; }
        yaml_parser_set_input_file(&parser, f);
        int docs = 0;
        for (;;) {
            yaml_document_t d;
            if (!yaml_parser_load(&parser, &d)) {
                fprintf(stderr, "%s:%lu: %s\n", argv[i], (unsigned long)parser.problem_mark.line + 1,
                        parser.problem ? parser.problem : "YAML error");
                problems++;
                break;
            }
            yaml_node_t *root = yaml_document_get_root_node(&d);
            if (!root) { yaml_document_delete(&d); break; }   /* end of stream */
            docs++;
            if (!strcmp(mode, "kube")) check_kube(argv[i], &d, root);
            else if (!strcmp(mode, "compose")) check_compose(argv[i], &d, root);
            yaml_document_delete(&d);
        }
        if (!docs) { fprintf(stderr, "%s: no YAML document\n", argv[i]); problems++; }
        yaml_parser_delete(&parser);
        fclose(f);
        if (!problems) printf("%s: %d document(s) ok\n", argv[i], docs);
    }
    return problems ? 1 : 0;
}
