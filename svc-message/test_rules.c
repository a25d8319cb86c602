/* Placeholder: replaced by the real tests in the next commit. */
int main(void) { return 0; }
