fn main() {
    direktiv_cmd::init::become_init_if_pid1();
}
